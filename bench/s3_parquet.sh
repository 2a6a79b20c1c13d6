#!/usr/bin/env bash
# Reading Parquet from an S3-compatible server beside the same file read
# locally: `mlp run` of a one-source pipeline (a fresh project each time, so
# nothing is cached), once with the file on disk and once with it in a
# bucket of a moto server on loopback (signed requests, the mirror, the
# content hash), then the re-run that finds the object's ETag unchanged.
# Prints seconds and the ratio.
#
#     bash bench/s3_parquet.sh [ROWS]      # default 1000000
#
# Needs python3 with pyarrow (to write the Parquet file) and moto in
# ~/.cache/mlp-py (.ci/run makes it). Goal (issue 14): the S3 read within
# 1.5x of the local read.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
PY="${MLP_PY:-$HOME/.cache/mlp-py}/bin/python"
WORK=$(mktemp -d)
PORT=55480
"$PY" -m moto.server -H 127.0.0.1 -p $PORT >/dev/null 2>&1 &
MOTO=$!
cleanup() { kill $MOTO 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
python3 ../shared/bench/gen_houses.py "$ROWS" "$WORK/houses.csv"
python3 - "$WORK" <<'PY'
import sys, pyarrow.csv as pc, pyarrow.parquet as pq
t = pc.read_csv(f"{sys.argv[1]}/houses.csv")
pq.write_table(t, f"{sys.argv[1]}/houses.parquet")
PY
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
"$PY" - "$WORK/houses.parquet" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
s3.create_bucket(Bucket="lake")
s3.upload_file(sys.argv[1], "lake", "houses/houses.parquet")
PY
pipeline() {
    cat <<MLP
source houses = parquet("$1") {
    id         : int
    sold_at    : date "%Y-%m-%d"
    city       : category
    condition  : category
    sqft       : float
    lot_sqft   : float
    bedrooms   : int?
    year_built : int?
    has_garage : bool
    price      : float
    sold_fast  : bool
}
MLP
}
timed() { local s e; s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
best() { # the best of three fresh runs
    local dir=$1 b=999999 t
    for _ in 1 2 3; do
        rm -rf "$dir/.mlp"
        t=$(timed "$MLP" run "$dir")
        b=$(echo "if ($t < $b) $t else $b" | bc -l)
    done
    echo "$b"
}
mkdir -p "$WORK/local" "$WORK/s3"
cp "$WORK/houses.parquet" "$WORK/local/"
pipeline "houses.parquet" > "$WORK/local/p.mlp"
pipeline "s3://lake/houses/houses.parquet" > "$WORK/s3/p.mlp"
local_s=$(best "$WORK/local")
s3_s=$(best "$WORK/s3")
again=$(timed "$MLP" run "$WORK/s3")
size=$(stat -c %s "$WORK/houses.parquet")
echo "rows: $ROWS; Parquet file: $((size / 1048576)) MiB"
printf 'mlp run, local file:             %.2f s\n' "$local_s"
printf 'mlp run, s3:// on loopback moto: %.2f s   (%.2fx the local read; goal <= 1.5x)\n' "$s3_s" "$(echo "$s3_s / $local_s" | bc -l)"
printf 'mlp run again, ETag unchanged:   %.2f s\n' "$again"
