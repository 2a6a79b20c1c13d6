#!/usr/bin/env bash
# The whole houses pipeline on ROWS rows (default 1,000,000): read, checks,
# split, features, transforms, ridge with a 5-fold search over three alphas,
# evaluation with the per-city MAE gap. `mlp run bench/houses_full.mlp` (cold
# cache) beside shared/bench/peer_sklearn.py on the same file, in one run;
# prints both times, the ratio, and both sets of metrics.
#
#     bash bench/train_vs_sklearn.sh [ROWS]
#
# Needs python3 with pandas, scikit-learn and pyarrow. Goal (issue 4): at least
# 5x faster, metrics within 1%.
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
rm -f "$WORK"/*.mlp
cp bench/houses_full.mlp "$WORK/houses_full.mlp"
rm -rf "$WORK/.mlp"
s=$(date +%s.%N); "$MLP" run "$WORK" --json > "$WORK/mlp_full.json"; e=$(date +%s.%N)
mlp_s=$(echo "$e - $s" | bc -l)
s=$(date +%s.%N); python3 "$PEER" "$WORK/houses.csv" > "$WORK/peer_full.json"; e=$(date +%s.%N)
peer_s=$(echo "$e - $s" | bc -l)
python3 - "$WORK" "$mlp_s" "$peer_s" <<'PY'
import json, sys, pathlib, glob
work, mlp_s, peer_s = pathlib.Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
m = json.loads((work / "mlp_full.json").read_text())
p = json.loads((work / "peer_full.json").read_text())
report = None
for d in glob.glob(str(work / ".mlp/cache/*")):
    meta = json.load(open(d + "/entry.json"))
    if meta["stage"] == "evaluate.price_model.test":
        report = json.load(open(d + "/report.json"))
gap = next(g for g in report["slices"][0]["gates"])["value"]
print("mlp stages:", ", ".join(f"{s['id']} {s['seconds']:.2f}s" for s in m["stages"]))
print("peer phases:", ", ".join(f"{k} {v:.2f}s" for k, v in p["seconds"].items()))
print(f"whole process: mlp {mlp_s:.2f}s   pandas+scikit-learn {peer_s:.2f}s   ratio {peer_s / mlp_s:.1f}x")
mm = report["metrics"]
pm = p["metrics"]
for k in ["rmse", "mae", "r2"]:
    print(f"{k:5} mlp {mm[k]:.4f}   peer {pm[k]:.4f}   difference {100 * (mm[k] - pm[k]) / pm[k]:+.2f}%")
print(f"gap(mae) by city: mlp {gap:.1f}   peer {pm['gap_mae_city']:.1f}")
PY
