#!/usr/bin/env bash
# The data phases on ROWS rows (default 1,000,000) of bench/gen_houses.py data:
# `mlp run bench/houses_prep.mlp` (cold cache) beside the same steps in pandas
# + scikit-learn (bench/peer_pandas_prep.py), in one run, on the same file.
# Prints both times, the ratio, and mlp's peak memory beside the in-memory
# size of the data.
#
#     bash bench/run_vs_pandas.sh [ROWS]
#
# Needs python3 with pandas, scikit-learn and pyarrow (pip install ...).
# Goals (issue 3): at least 5x faster than pandas; peak memory at most twice
# the in-memory size of the data.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
if [ ! -f "$WORK/houses.csv" ] || [ "$(($(wc -l < "$WORK/houses.csv") - 1))" != "$ROWS" ]; then
    python3 bench/gen_houses.py "$ROWS" "$WORK/houses.csv"
fi
rm -f "$WORK"/*.mlp
cp bench/houses_prep.mlp "$WORK/houses_prep.mlp"
echo "data: $ROWS rows, $(du -h "$WORK/houses.csv" | cut -f1)"

# Three runs of each, every mlp run on a cold cache; the median is reported.
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mlp_times=(); rss=()
for _ in 1 2 3; do
    rm -rf "$WORK/.mlp"
    start=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$WORK/rss.txt" "$MLP" run "$WORK" --json > "$WORK/mlp.json"
    end=$(date +%s.%N)
    mlp_times+=("$(echo "$end - $start" | bc -l)")
    rss+=("$(tail -1 "$WORK/rss.txt")")
done
pandas_times=()
for _ in 1 2 3; do
    start=$(date +%s.%N)
    python3 bench/peer_pandas_prep.py "$WORK/houses.csv" > "$WORK/pandas.json"
    end=$(date +%s.%N)
    pandas_times+=("$(echo "$end - $start" | bc -l)")
done
mlp_s=$(printf '%s\n' "${mlp_times[@]}" | median)
pandas_s=$(printf '%s\n' "${pandas_times[@]}" | median)
rss_kb=$(printf '%s\n' "${rss[@]}" | median)
echo "mlp runs: ${mlp_times[*]}"
echo "pandas runs: ${pandas_times[*]}"

python3 - "$WORK" "$mlp_s" "$pandas_s" "$rss_kb" <<'PY'
import json, sys, pathlib
work, mlp_s, pandas_s, rss_kb = pathlib.Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
m = json.loads((work / "mlp.json").read_text())
p = json.loads((work / "pandas.json").read_text())
print("mlp stages:", ", ".join(f"{s['id']} {s['seconds']:.2f}s" for s in m["stages"]))
print("pandas phases:", ", ".join(f"{k} {v:.2f}s" for k, v in p["seconds"].items()))
print(f"median of 3, whole process: mlp run {mlp_s:.2f}s   pandas+sklearn {pandas_s:.2f}s   ratio {pandas_s / mlp_s:.1f}x")
inside = p["seconds"]["total"]
print(f"pandas inside the script (without interpreter start and imports): {inside:.2f}s   ratio {inside / mlp_s:.1f}x")
# In-memory size of the data: the source frame as mlp holds it (Arrow).
src = next(s for s in m["stages"] if s["id"] == "source.houses")
approx = src.get("bytes") or 0
print(f"peak RSS: {rss_kb / 1024:.0f} MiB; in-memory data (Arrow): {approx / 2**20:.0f} MiB; ratio {rss_kb * 1024 / max(approx, 1):.2f}")
PY
