#!/usr/bin/env bash
# A model on the houses pipeline, ROWS rows (default 1,000,000): `mlp run`
# of bench/houses_full.mlp with MODEL beside shared/bench/peer_sklearn.py
# with the same model on the same file, in one run. Prints the
# whole-process times, the fit times, the ratios and both sets of metrics.
#
#     bash bench/model_vs_sklearn.sh gradient_boosting [ROWS]
#         regression (price) and classification (sold_fast), 100 iterations,
#         31 leaves, 255 bins, learning rate 0.1, no early stopping, beside
#         --model hist_gradient_boosting. Goals (issue 15): the fit at least
#         as fast as scikit-learn's, the whole pipeline 2x faster, metrics
#         within 1%.
#         When python3 can import lightgbm (pip install lightgbm), the same
#         pipeline with LightGBM in the model's place (bench/peer_lightgbm.py,
#         the stretch goal) is timed too.
#     bash bench/model_vs_sklearn.sh logistic_regression [ROWS]
#         classification (sold_fast) beside --task classification
#         (LogisticRegression). Goal (issue 15): the whole pipeline 5x
#         faster.
#
# REPEAT=N (default 1) runs each side N times, alternating (mlp from a cold
# cache each time), and reports the median whole-process times, their
# ratio and each run's: the machine's speed moves between runs.
#
# Needs python3 with pandas, scikit-learn and pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: model_vs_sklearn.sh gradient_boosting|logistic_regression [ROWS]}
ROWS=${2:-1000000}
REPEAT=${REPEAT:-1}
case "$MODEL" in
    gradient_boosting) TASKS="regression classification"; PEER_MODEL=(--model hist_gradient_boosting)
        SETTINGS=$'    max_iter       = 100\n    max_leaf_nodes = 31\n    max_bins       = 255\n    learning_rate  = 0.1\n    early_stopping = false' ;;
    logistic_regression) TASKS="classification"; PEER_MODEL=()
        SETTINGS=$'    max_iter       = 1000' ;;
    *) echo "MODEL is gradient_boosting or logistic_regression" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
PEER=${PEER:-../shared/bench/peer_sklearn.py}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
if [ ! -f "$WORK/houses.csv" ] || [ "$(($(wc -l < "$WORK/houses.csv") - 1))" != "$ROWS" ]; then
    python3 bench/gen_houses.py "$ROWS" "$WORK/houses.csv"
fi
for task in $TASKS; do
    rm -rf "$WORK/.mlp" "$WORK"/*.mlp
    if [ "$task" = regression ]; then
        target=price; other=sold_fast; metrics="rmse, mae, r2"
    else
        target=sold_fast; other=price; metrics="accuracy, f1, roc_auc"
    fi
    python3 - "$WORK/p.mlp" "$target" "$other" "$metrics" "$MODEL" "$SETTINGS" <<'PY'
import sys
out, target, other, metrics, algorithm, settings = sys.argv[1:]
s = open("bench/houses_full.mlp").read()
model = f"""model price_model = {algorithm}(prep) {{
    target         = {target}
    exclude        = id, sold_at, {other}
{settings}
}}

evaluate price_model on test {{
    metrics {metrics}
}}
"""
s = s[: s.index("model price_model")] + model
open(out, "w").write(s)
PY
    mlp_s=""; peer_s=""
    for _ in $(seq 1 "$REPEAT"); do
        rm -rf "$WORK/.mlp"
        s=$(date +%s.%N); "$MLP" run "$WORK" --json > "$WORK/mlp.json"; e=$(date +%s.%N)
        mlp_s="$mlp_s $(echo "$e - $s" | bc -l)"
        s=$(date +%s.%N); python3 "$PEER" "$WORK/houses.csv" --task "$task" "${PEER_MODEL[@]}" > "$WORK/peer.json"; e=$(date +%s.%N)
        peer_s="$peer_s $(echo "$e - $s" | bc -l)"
    done
    lgbm_s=0
    rm -f "$WORK/lgbm.json"
    if [ "$MODEL" = gradient_boosting ] && python3 -c "import lightgbm" 2>/dev/null; then
        s=$(date +%s.%N); PEER="$PEER" python3 bench/peer_lightgbm.py "$WORK/houses.csv" --task "$task" > "$WORK/lgbm.json"; e=$(date +%s.%N)
        lgbm_s=$(echo "$e - $s" | bc -l)
    fi
    python3 - "$WORK" "$mlp_s" "$peer_s" "$task" "$lgbm_s" <<'PY'
import json, sys, pathlib, glob, statistics
work, task = pathlib.Path(sys.argv[1]), sys.argv[4]
mlp_runs = [float(v) for v in sys.argv[2].split()]
peer_runs = [float(v) for v in sys.argv[3].split()]
mlp_s, peer_s = statistics.median(mlp_runs), statistics.median(peer_runs)
lgbm_s = float(sys.argv[5])
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
if len(mlp_runs) > 1:
    print(f"whole process, {len(mlp_runs)} runs each (the last run's stages above): mlp",
          ", ".join(f"{v:.2f}s" for v in mlp_runs), "  peer", ", ".join(f"{v:.2f}s" for v in peer_runs),
          "  ratios", ", ".join(f"{p / m:.2f}x" for m, p in zip(mlp_runs, peer_runs)))
    print(f"whole process, medians: mlp {mlp_s:.2f}s   pandas+scikit-learn {peer_s:.2f}s   ratio {peer_s / mlp_s:.2f}x")
else:
    print(f"whole process: mlp {mlp_s:.2f}s   pandas+scikit-learn {peer_s:.2f}s   ratio {peer_s / mlp_s:.2f}x")
def compare(name, metrics):
    for k, v in metrics.items():
        ours = report["metrics"].get(k)
        if ours is not None:
            print(f"{k:8} mlp {ours:.4f}   {name} {v:.4f}   difference {100 * (ours - v) / v:+.2f}%")
compare("peer", p["metrics"])
if (work / "lgbm.json").exists():
    l = json.loads((work / "lgbm.json").read_text())
    lf = l["seconds"]["fit"]
    print(f"lightgbm fit: mlp model stage {fit:.2f}s   lightgbm fit {lf:.2f}s   ratio {lf / fit:.2f}x")
    print(f"lightgbm whole process: mlp {mlp_s:.2f}s   pandas+lightgbm {lgbm_s:.2f}s   ratio {lgbm_s / mlp_s:.2f}x")
    compare("lightgbm", l["metrics"])
PY
done
