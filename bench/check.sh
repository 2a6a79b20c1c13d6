#!/usr/bin/env bash
# `mlp check` on a generated pipeline of 1,000 stages, release build.
#
#     bash bench/check.sh [STAGES] [RUNS]
#
# Prints the stage count, then the best and median wall time of RUNS runs.
# Goal (issue 2): 100 ms or less for 1,000 stages.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGES=${1:-1000}
RUNS=${2:-20}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-runtime --bin mlp
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
