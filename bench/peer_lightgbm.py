#!/usr/bin/env python3
"""The stretch peer for gradient boosting: the pandas + scikit-learn houses pipeline of
../shared/bench/peer_sklearn.py, run unchanged, with LightGBM's LGBMRegressor/LGBMClassifier in
place of scikit-learn's HistGradientBoosting* (the same settings: 100 iterations, 31 leaves, 255
bins, learning rate 0.1, at least 20 rows a leaf, no l2 penalty, no early stopping, no sampling,
every core).

    python3 bench/peer_lightgbm.py houses.csv [--task regression|classification]

Needs: pip install lightgbm (and the peer's pandas, scikit-learn, pyarrow). Prints the peer's JSON
object, its "tool" named "pandas+lightgbm".
"""
import contextlib
import importlib.util
import io
import json
import os
import pathlib
import sys

import lightgbm
import sklearn.ensemble


def lgbm(kind):
    """A stand-in for HistGradientBoosting*: its parameters mapped to LightGBM's."""

    def make(max_iter, max_leaf_nodes, max_bins, learning_rate, early_stopping, random_state):
        assert early_stopping is False
        return kind(n_estimators=max_iter, num_leaves=max_leaf_nodes, max_bin=max_bins,
                    learning_rate=learning_rate, min_child_samples=20, reg_lambda=0.0,
                    subsample=1.0, colsample_bytree=1.0, random_state=random_state, verbose=-1)

    return make


def main():
    peer = pathlib.Path(os.environ.get("PEER") or pathlib.Path(__file__).resolve().parents[2]
                        / "shared" / "bench" / "peer_sklearn.py")
    spec = importlib.util.spec_from_file_location("peer_sklearn", peer)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The peer imports these inside its model branch: it gets LightGBM's.
    sklearn.ensemble.HistGradientBoostingRegressor = lgbm(lightgbm.LGBMRegressor)
    sklearn.ensemble.HistGradientBoostingClassifier = lgbm(lightgbm.LGBMClassifier)
    sys.argv = [str(peer)] + sys.argv[1:] + ["--model", "hist_gradient_boosting"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.main()
    result = json.loads(out.getvalue())
    result["tool"] = "pandas+lightgbm"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
