#!/usr/bin/env bash
# Peak memory of `mlp predict` and `mlp monitor` on files of growing size
# (bench/gen_houses.py data), beside pandas + scikit-learn predicting the
# same rows with the same kind of model, in one run. mlp reads, predicts and
# writes in batches (MLP_PREDICT_BATCH_ROWS, default 1,000,000): its peak should
# stay flat as the file grows.
#
#     bash bench/predict_memory.sh [ROWS...]      (default: 1000000 5000000)
#
# Needs python3 with pandas and scikit-learn for the peer's column.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-1000000 5000000}")
read -r -a SIZES <<< "${SIZES[*]}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK/project"
# The model: bench/serve_houses.mlp trained on 200,000 rows.
python3 bench/gen_houses.py 200000 "$WORK/project/houses.csv" --seed 1 >/dev/null
cp bench/serve_houses.mlp "$WORK/project/houses.mlp"
"$MLP" run "$WORK/project" >/dev/null 2>&1
peak() { /usr/bin/time -f "%M %e" -o "$WORK/t" "$@" >/dev/null 2>&1 || true; read -r kb s < "$WORK/t"; echo "$((kb / 1024)) $s"; }
printf '%-10s %-8s %-18s %-18s %-18s\n' rows file_MB "mlp predict MB/s" "mlp monitor MB/s" "pandas+sklearn MB/s"
for n in "${SIZES[@]}"; do
    f="$WORK/req$n.csv"
    [ -f "$f" ] || python3 bench/gen_houses.py "$n" "$f" --seed 2 >/dev/null
    mb=$(( $(stat -c %s "$f") / 1048576 ))
    p=$(peak "$MLP" predict bench-houses --project "$WORK/project" --input "$f" --output "$WORK/out.csv")
    m=$(peak "$MLP" monitor bench-houses --project "$WORK/project" --data "$f")
    if python3 -c "import pandas, sklearn" 2>/dev/null; then
        peer=$(peak python3 - "$WORK/project/houses.csv" "$f" "$WORK/peer.csv" <<'PY'
import sys
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
num = ["sqft", "lot_sqft", "bedrooms", "year_built"]
cat = ["city", "condition"]
train = pd.read_csv(sys.argv[1])
model = make_pipeline(
    make_column_transformer(
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
        (OneHotEncoder(handle_unknown="ignore"), cat)),
    Ridge(alpha=1.0)).fit(train[num + cat], train["price"])
rows = pd.read_csv(sys.argv[2])
rows["prediction"] = model.predict(rows[num + cat])
rows.to_csv(sys.argv[3], index=False)
PY
)
    else
        peer="- -"
    fi
    printf '%-10s %-8s %-18s %-18s %-18s\n' "$n" "$mb" "$(echo $p | tr ' ' /)" "$(echo $m | tr ' ' /)" "$(echo $peer | tr ' ' /)"
done
