#!/usr/bin/env python3
"""Reads one size's results for bench/history_vs_pandas.sh and prints the comparison.

    python3 bench/history_compare.py WORK DATA CUSTOMERS
"""
import glob
import importlib.util
import json
import pathlib
import re
import sys

import numpy as np
import pandas as pd
import pyarrow.ipc as ipc

work, data, n = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])


def seconds(text):
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + float(s)


def peak_mib(text):
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024


m = json.loads((work / "mlp.json").read_text())
p = json.loads((work / "peer.json").read_text())
mt, pt = (work / "mlp.time").read_text(), (work / "peer.time").read_text()
stage = {s["id"]: s for s in m["stages"]}
report = None
for e in glob.glob(str(work / ".mlp/cache/*/entry.json")):
    if json.load(open(e))["stage"] == "evaluate.churn.test":
        report = json.load(open(pathlib.Path(e).parent / "report.json"))
mh, ph = stage["history.activity"]["seconds"], p["seconds"]["history"]
mw, pw = seconds(mt), seconds(pt)
print(f"== {n:,} customers: {p['rows']['orders']:,} orders, {p['rows']['labels']:,} labels")
print("mlp stages:", ", ".join(f"{s['id']} {s['seconds']:.2f}s" for s in m["stages"]))
print("peer phases:", ", ".join(f"{k} {v:.2f}s" for k, v in p["seconds"].items()))
print(f"history step: mlp {mh:.2f}s   peer {ph:.2f}s   ratio {ph / mh:.1f}x")
print(f"whole process: mlp {mw:.2f}s   peer {pw:.2f}s   ratio {pw / mw:.1f}x")
print(f"peak memory: mlp {peak_mib(mt):.0f} MiB   peer {peak_mib(pt):.0f} MiB   ratio {peak_mib(mt) / peak_mib(pt):.2f}")
mm = dict(report["metrics"])
mm["gap_accuracy_plan"] = report["slices"][0]["gates"][0]["value"]
for k in ["accuracy", "roc_auc", "gap_accuracy_plan"]:
    a, b = mm[k], p["metrics"][k]
    print(f"{k:18} mlp {a:.6f}   peer {b:.6f}   difference {100 * (a - b) / b:+.3f}%")

# The peer's features, computed as peer_history.py computes them.
spec = importlib.util.spec_from_file_location("peer", str(pathlib.Path(__file__).parent / "../../shared/bench/peer_history.py"))
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
customers = pd.read_csv(f"{data}/customers.csv", dtype={"customer_id": "int64", "plan": "category", "country": "category", "age": "Int64"}, parse_dates=["signup_on"])
orders = pd.read_csv(f"{data}/orders.csv", dtype={"order_id": "int64", "customer_id": "int64", "amount": "float64", "channel": "category"}, parse_dates=["ordered_at"])
labels = pd.read_csv(f"{data}/labels.csv", dtype={"customer_id": "int64", "churned": "bool"}, parse_dates=["as_of"])
orders = orders[orders["amount"] >= 0]
ex = labels.merge(customers, on="customer_id", how="left", validate="many_to_one")
ev = orders.sort_values(["customer_id", "ordered_at"], kind="stable")[["customer_id", "ordered_at", "amount"]].copy()
ev["n"] = ev.groupby("customer_id").cumcount() + 1
ev["spend"] = ev.groupby("customer_id")["amount"].cumsum()
ev = ev.sort_values("ordered_at", kind="stable")
n_now, s_now, last = peer.cumulative_at(ev, ex, "as_of")
ex["days_since_last"] = (ex["as_of"] - last.to_numpy()).dt.days
for name, (kind, days) in peer.WINDOWS.items():
    ex["_from"] = ex["as_of"] - pd.Timedelta(days=days)
    n_then, s_then, _ = peer.cumulative_at(ev, ex, "_from")
    cnt, s = n_now - n_then, s_now - s_then
    ex[name] = cnt if kind == "count" else s if kind == "sum" else np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)


def stage_frame(entry):
    """A cache entry's output frame: its own columns, the others from its
    base entry (docs/runtime.md, "The cache")."""
    meta = json.load(open(entry / "entry.json"))
    own = ipc.open_file(str(entry / "frame.arrow")).read_all().to_pandas() if "frame.arrow" in meta["files"] else pd.DataFrame()
    base = meta.get("base")
    if base is None:
        return own
    inherited = stage_frame(entry.parent / base["key"])
    return pd.DataFrame({c: (inherited[c] if c in base["inherited"] else own[c]) for c in base["columns"]})


frame = None
for e in glob.glob(str(work / ".mlp/cache/*/entry.json")):
    if json.load(open(e))["stage"] == "history.activity":
        frame = stage_frame(pathlib.Path(e).parent)
assert len(frame) == len(ex)
for c in ["orders_30d", "spend_90d", "avg_order_365d", "days_since_last"]:
    a, b = frame[c].astype("float64").to_numpy(), ex[c].astype("float64").to_numpy()
    nulls = np.array_equal(np.isnan(a), np.isnan(b))
    same = int(np.sum((a == b) | (np.isnan(a) & np.isnan(b))))
    rel = float(np.nanmax(np.abs(a - b) / np.maximum(1.0, np.abs(b)))) if len(a) else 0.0
    print(f"feature {c:16} nulls agree: {nulls}   identical: {same:,} of {len(a):,}   largest relative difference {rel:.1e}")
