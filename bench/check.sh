#!/usr/bin/env bash
# `mlp check` on generated pipelines, release build.
#
#     bash bench/check.sh [STAGES] [RUNS]
#
# 1. A pipeline of STAGES stages (bench/gen_pipeline.py), best and median
#    wall time of RUNS runs. Goal (issue 2): 100 ms or less for 1,000 stages.
# 2. Two shapes that used to grow faster than the pipeline (issue 11): one
#    `features` block of N lines, and a chain of N `features` stages each
#    adding one column, for N = 1,000 to 8,000; wall time and peak memory of
#    one run each. Goal: the 2,000-stage chain under 200 ms and 100 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGES=${1:-1000}
RUNS=${2:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 bench/gen_pipeline.py "$STAGES" "$WORK/big.mlp" >/dev/null
"$MLP" check "$WORK/big.mlp" 2>&1 | tail -1
if command -v hyperfine >/dev/null; then
    hyperfine --warmup 3 --runs "$RUNS" "$MLP check $WORK/big.mlp"
else
    times=()
    for _ in $(seq "$RUNS"); do
        s=$(date +%s%N)
        "$MLP" check "$WORK/big.mlp" 2>/dev/null
        e=$(date +%s%N)
        times+=($(( (e - s) / 1000 )))
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "runs: %d  best: %.1f ms  median: %.1f ms\n", NR, a[1]/1000, a[int((NR+1)/2)]/1000}'
fi

python3 - "$WORK" <<'PY'
import sys
work = sys.argv[1]
for n in (1000, 2000, 4000, 8000):
    lines = "\n".join(f"    f{i} = x * {i}.0 + 1.0" for i in range(n))
    open(f"{work}/block{n}.mlp", "w").write(
        f'source d = csv("d.csv") {{ x : float  y : float }}\nfeatures f = d {{\n{lines}\n}}\n')
    stages = ['source d = csv("d.csv") { x : float  y : float }', "features s0 = d { c0 = x + 1.0 }"]
    stages += [f"features s{i} = s{i-1} {{ c{i} = c{i-1} + 1.0 }}" for i in range(1, n)]
    open(f"{work}/chain{n}.mlp", "w").write("\n".join(stages) + "\n")
PY
printf '%-8s %6s %10s %10s\n' shape n seconds peak_MB
for shape in block chain; do
    for n in 1000 2000 4000 8000; do
        /usr/bin/time -f "%e %M" -o "$WORK/t" "$MLP" check "$WORK/$shape$n.mlp" >/dev/null 2>&1 || true
        read -r secs kb < "$WORK/t"
        printf '%-8s %6d %10s %10.1f\n' "$shape" "$n" "$secs" "$(echo "$kb / 1024" | bc -l)"
    done
done
