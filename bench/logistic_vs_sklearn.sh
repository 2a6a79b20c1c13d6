#!/usr/bin/env bash
# Logistic regression on the houses classification pipeline, ROWS rows
# (default 1,000,000): `mlp run` of bench/houses_full.mlp with
# `logistic_regression` on sold_fast beside shared/bench/peer_sklearn.py
# --task classification (LogisticRegression) on the same file, in one run.
# Prints the whole-process times, the fit times, the ratio and both sets of
# metrics.
#
#     bash bench/logistic_vs_sklearn.sh [ROWS]
#
# Needs python3 with pandas, scikit-learn and pyarrow. Goal (issue 15): the
# whole pipeline at least 5x faster than the peer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
PEER=${PEER:-../shared/bench/peer_sklearn.py}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
if [ ! -f "$WORK/houses.csv" ] || [ "$(($(wc -l < "$WORK/houses.csv") - 1))" != "$ROWS" ]; then
    python3 bench/gen_houses.py "$ROWS" "$WORK/houses.csv"
fi
for task in classification; do
    rm -rf "$WORK/.mlp" "$WORK"/*.mlp
    if [ "$task" = regression ]; then
        target=price; other=sold_fast; metrics="rmse, mae, r2"
    else
        target=sold_fast; other=price; metrics="accuracy, f1, roc_auc"
    fi
    python3 - "$WORK/p.mlp" "$target" "$other" "$metrics" <<'PY'
import sys, re
out, target, other, metrics = sys.argv[1:]
s = open("bench/houses_full.mlp").read()
model = f"""model price_model = logistic_regression(prep) {{
    target   = {target}
    exclude  = id, sold_at, {other}
    max_iter = 1000
}}

evaluate price_model on test {{
    metrics {metrics}
}}
"""
s = s[: s.index("model price_model")] + model
open(out, "w").write(s)
PY
    s=$(date +%s.%N); "$MLP" run "$WORK" --json > "$WORK/mlp.json"; e=$(date +%s.%N)
    mlp_s=$(echo "$e - $s" | bc -l)
    s=$(date +%s.%N); python3 "$PEER" "$WORK/houses.csv" --task "$task" > "$WORK/peer.json"; e=$(date +%s.%N)
    peer_s=$(echo "$e - $s" | bc -l)
    python3 - "$WORK" "$mlp_s" "$peer_s" "$task" <<'PY'
import json, sys, pathlib, glob
work, mlp_s, peer_s, task = pathlib.Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
m = json.loads((work / "mlp.json").read_text())
p = json.loads((work / "peer.json").read_text())
report = None
for d in glob.glob(str(work / ".mlp/cache/*")):
    meta = json.load(open(d + "/entry.json"))
    if meta["stage"] == "evaluate.price_model.test":
        report = json.load(open(d + "/report.json"))
fit = next(s["seconds"] for s in m["stages"] if s["id"] == "model.price_model")
print(f"== {task}")
print("mlp stages:", ", ".join(f"{s['id']} {s['seconds']:.2f}s" for s in m["stages"]))
print("peer phases:", ", ".join(f"{k} {v:.2f}s" for k, v in p["seconds"].items()))
print(f"fit: mlp model stage {fit:.2f}s (fit, predict every row)   scikit-learn fit {p['seconds']['fit']:.2f}s   ratio {p['seconds']['fit'] / fit:.2f}x")
print(f"whole process: mlp {mlp_s:.2f}s   pandas+scikit-learn {peer_s:.2f}s   ratio {peer_s / mlp_s:.2f}x")
for k, v in p["metrics"].items():
    ours = report["metrics"].get(k)
    if ours is not None:
        print(f"{k:8} mlp {ours:.4f}   peer {v:.4f}   difference {100 * (ours - v) / v:+.2f}%")
PY
done
