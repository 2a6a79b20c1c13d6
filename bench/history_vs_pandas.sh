#!/usr/bin/env bash
# The multi-table churn pipeline (three tables, a join, point-in-time history
# aggregates, a time split, logistic regression) in mlp beside
# shared/bench/peer_history.py (pandas + scikit-learn, merge_asof) on the same
# gen_shop.py data, in one run, for each size given (customers):
#
#     bash bench/history_vs_pandas.sh [CUSTOMERS...]      # default: 100000 1000000
#
# Prints, per size: the history step's seconds (mlp's `history` stage against
# the peer's `history` phase) and their ratio, the whole pipeline's seconds
# and ratio, peak memory of both processes (/usr/bin/time -v), both sets of
# metrics, and a comparison of every history feature value (mlp's stage
# output against the peer's computation). Goals (issue 13): history step at
# least 10x the peer's, the whole pipeline at least 5x, metrics within 1%,
# peak memory at most 2x the peer's.
#
# Data is generated once per size under $DATA (default ~/.cache/mlp-bench-shop).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 1000000)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
SHARED=../shared/bench
DATA=${DATA:-$HOME/.cache/mlp-bench-shop}
for n in "${SIZES[@]}"; do
    d="$DATA/$n"
    if [ ! -f "$d/labels.csv" ]; then
        python3 "$SHARED/gen_shop.py" "$n" "$d" >/dev/null
    fi
    work=$(mktemp -d)
    for f in customers orders labels; do ln -s "$d/$f.csv" "$work/$f.csv"; done
    # The peer's split: the latest 20% of as_of dates (pandas' quantile) are test.
    cut=$(python3 - "$d/labels.csv" <<'PY'
import sys, pandas as pd
q = pd.read_csv(sys.argv[1], usecols=["as_of"], parse_dates=["as_of"])["as_of"].quantile(0.8)
print(q.ceil("D").strftime("%Y-%m-%d"))
PY
)
    sed "s/CUT/$cut/" bench/shop_peer.mlp > "$work/p.mlp"
    /usr/bin/time -v "$MLP" run "$work" --json > "$work/mlp.json" 2> "$work/mlp.time"
    /usr/bin/time -v python3 "$SHARED/peer_history.py" "$d" > "$work/peer.json" 2> "$work/peer.time"
    python3 bench/history_compare.py "$work" "$d" "$n"
    rm -rf "$work"
done
