#!/usr/bin/env python3
"""Reference values for mlp's drift statistics, from scipy, on fixed inputs.

    python3 bench/drift_reference.py > tests/fixtures/drift/reference.json

runtime/tests/drift.rs checks mlp's statistics against this file; rerun the
script (and commit its output) only to add cases. Made with scipy 1.17.1.
"""
import json

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

PSI_FLOOR = 1e-4


def psi(expected, actual):
    e = np.asarray(expected, float)
    a = np.asarray(actual, float)
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def main():
    rng = np.random.default_rng(20261127)
    samples = []
    for name, a, b in [
        ("same-normal", rng.normal(0, 1, 80), rng.normal(0, 1, 120)),
        ("shifted-normal", rng.normal(0, 1, 150), rng.normal(0.4, 1, 150)),
        ("scaled", rng.normal(10, 1, 300), rng.normal(10, 1.6, 250)),
        ("ties", rng.integers(0, 5, 60).astype(float), rng.integers(0, 6, 45).astype(float)),
        ("small", rng.uniform(0, 1, 7), rng.uniform(0.2, 1.2, 9)),
        ("large", rng.exponential(2.0, 2000), rng.exponential(2.3, 3000)),
    ]:
        ks = ks_2samp(a, b, method="exact")
        samples.append({
            "name": name,
            "a": a.tolist(),
            "b": b.tolist(),
            "ks_statistic": float(ks.statistic),
            "ks_p_value": float(ks.pvalue),
            "wasserstein": float(wasserstein_distance(a, b)),
        })
    binned = []
    for name, e, a in [
        ("stable", [100, 200, 300, 400], [110, 190, 310, 390]),
        ("shifted", [250, 250, 250, 250], [50, 150, 300, 500]),
        ("empty-bin", [10, 0, 30, 60], [12, 5, 28, 55]),
        ("categories", [500, 300, 200], [200, 300, 500]),
    ]:
        table = np.array([e, a], float)
        keep = table.sum(axis=0) > 0
        stat, p, dof, _ = chi2_contingency(table[:, keep], correction=False)
        binned.append({
            "name": name,
            "expected": e,
            "actual": a,
            "psi": psi(e, a),
            "js": float(jensenshannon(np.array(e, float), np.array(a, float), base=2)),
            "chi2_statistic": float(stat),
            "chi2_p_value": float(p),
            "chi2_dof": int(dof),
        })
    json.dump({"samples": samples, "binned": binned}, __import__("sys").stdout, indent=1)


if __name__ == "__main__":
    main()
