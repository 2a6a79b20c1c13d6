#!/usr/bin/env bash
# Reading a PostgreSQL table into a source stage: `mlp run` of a one-source
# pipeline (fetch with COPY, hash, read, store) beside pandas.read_sql with
# SQLAlchemy + psycopg, and beside the protocol's floor (`COPY ... TO STDOUT`
# into /dev/null with psql), on a ROWS-row, 8-column table of a throwaway
# cluster on loopback, in one run. Prints seconds, ratios and peak memory.
#
#     bash bench/postgres_read.sh [ROWS]      # default 5000000
#
# Needs PostgreSQL's server binaries (Debian package postgresql) and, for the
# peer, pandas, SQLAlchemy and psycopg (pip install "psycopg[binary]" sqlalchemy).
# Goals (issue 14): at least 5x pandas.read_sql, within 2x of the COPY floor,
# peak memory at most 2x the result's Arrow size.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-5000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d)
chmod 755 "$WORK"
PORT=55470
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() { as_pg "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
echo bench > "$WORK/pw"
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK"
as_pg "$BIN/initdb" -D "$WORK/data" -A scram-sha-256 -U mlp --pwfile "$WORK/pw" >/dev/null
as_pg "$BIN/pg_ctl" -D "$WORK/data" -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=512MB" -l "$WORK/log" -w start >/dev/null
export PGPASSWORD=bench
export BENCH_DB="postgres://mlp:bench@127.0.0.1:$PORT/postgres"
psql -q -h 127.0.0.1 -p $PORT -U mlp -d postgres <<SQL
CREATE TABLE t (id bigint, a int, b float8, c float8, d text, e bool, f date, g timestamp);
INSERT INTO t SELECT i, (i * 7) % 1000, i * 0.5, random(), 'level_' || (i % 20), i % 3 = 0,
    date '2020-01-01' + (i % 1500), timestamp '2020-01-01' + (i % 100000) * interval '1 minute'
FROM generate_series(1, $ROWS) AS i;
ANALYZE t;
SQL
mkdir -p "$WORK/p"
cat > "$WORK/p/p.mlp" <<'MLP'
source t = postgres(table = "t", url = env("BENCH_DB")) {
    id : int
    a  : int
    b  : float
    c  : float
    d  : category
    e  : bool
    f  : date
    g  : datetime
}
MLP
s=$(date +%s.%N); psql -q -h 127.0.0.1 -p $PORT -U mlp -d postgres -c "COPY t TO STDOUT" > /dev/null; e=$(date +%s.%N)
floor=$(echo "$e - $s" | bc -l)
s=$(date +%s.%N); /usr/bin/time -v "$MLP" run "$WORK/p" --json > "$WORK/mlp.json" 2> "$WORK/mlp.time"; e=$(date +%s.%N)
mlp_s=$(echo "$e - $s" | bc -l)
python3 - "$WORK" "$floor" "$mlp_s" <<'PY'
import json, re, sys, time
import pandas as pd
import sqlalchemy as sa
work, floor, mlp_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
import os
engine = sa.create_engine(os.environ["BENCH_DB"].replace("postgres://", "postgresql+psycopg://"))
t0 = time.perf_counter()
df = pd.read_sql("SELECT * FROM t", engine)
peer = time.perf_counter() - t0
m = json.load(open(f"{work}/mlp.json"))
stage = next(s for s in m["stages"] if s["id"] == "source.t")
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{work}/mlp.time").read()).group(1)) / 1024
arrow = stage.get("bytes") or 0
print(f"rows: {len(df):,}")
print(f"COPY ... TO STDOUT into /dev/null (the floor): {floor:.2f} s")
print(f"mlp run (fetch, hash, read, store): {mlp_s:.2f} s   source stage alone {stage['seconds']:.2f} s")
print(f"pandas.read_sql (SQLAlchemy + psycopg): {peer:.2f} s")
print(f"mlp vs pandas: {peer / mlp_s:.1f}x faster;  mlp vs the floor: {mlp_s / floor:.1f}x the floor")
print(f"mlp peak memory {rss:.0f} MiB; the frame in memory {arrow / 2**20:.0f} MiB")
PY
