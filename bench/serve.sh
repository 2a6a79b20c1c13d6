#!/usr/bin/env bash
# `mlp serve` beside MLflow's `mlflow models serve` of the same scikit-learn
# pipeline (shared/bench/peer_mlflow_model.py), on this machine, in one run.
#
#     bash bench/serve.sh [TRAIN_ROWS] [SECONDS]
#
# Needs wrk (Debian: apt-get install wrk) and, for the peer, mlflow and
# scikit-learn (pip install mlflow scikit-learn); without mlflow only mlp is
# measured. Each server is pinned to CPU 0 and wrk (one thread, 8
# connections) to CPU 1. Measured: single-row requests to MLflow's
# /invocations format on both servers and to mlp's /v1/predict, then
# requests of 10,000 rows. Goal (issue 6): at least 100x MLflow's
# single-row throughput, p99 of 2 ms or less.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-100000}
SECS=${2:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
REPO=$(pwd)
SHARED="$REPO/../shared/bench"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    # Each server runs in its own process group (setsid): stop all of it
    # (mlflow starts uvicorn workers).
    for p in "${PIDS[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }

python3 "$SHARED/gen_houses.py" "$ROWS" "$WORK/houses.csv" >/dev/null
cp bench/serve_houses.mlp "$WORK/p.mlp"
(cd "$WORK" && "$MLP" run >/dev/null)

# The request bodies: the same rows for both servers.
python3 - "$WORK" <<'PY'
import csv, json, sys
work = sys.argv[1]
cols = ["city", "condition", "sqft", "lot_sqft", "bedrooms", "year_built"]
def val(c, v):
    if v == "":
        return None
    if c in ("city", "condition"):
        return v
    if c in ("bedrooms", "year_built"):
        return int(v)
    return float(v)
rows = []
with open(f"{work}/houses.csv") as f:
    for r in csv.DictReader(f):
        rows.append([val(c, r[c]) for c in cols])
        if len(rows) == 10000:
            break
one = next(r for r in rows if None not in r)
bodies = {
    "one_split": {"dataframe_split": {"columns": cols, "data": [one]}},
    "one_records": [dict(zip(cols, one))],
    "batch_split": {"dataframe_split": {"columns": cols, "data": rows}},
}
for name, b in bodies.items():
    body = json.dumps(b)
    open(f"{work}/{name}.json", "w").write(body)
    with open(f"{work}/{name}.lua", "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write(f'local file = io.open("{work}/{name}.json")\nwrk.body = file:read("*a")\nfile:close()\n')
PY

port_free() {
    if curl -s -o /dev/null "http://127.0.0.1:$1/"; then
        echo "port $1 is already in use (a server from an earlier run?)"; exit 1
    fi
}

wait_for() {
    for _ in $(seq 600); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.2
    done
    echo "server at $1 did not start"; exit 1
}

# wrk's summary as: requests/s, p50 ms, p99 ms.
load() {
    local url=$1 script=$2 secs=$3
    taskset -c 1 wrk -t1 -c8 -d"${secs}s" --latency -s "$script" "$url" > "$WORK/wrk.txt"
    python3 - "$WORK/wrk.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"50%\s+(\S+)", t).group(1))
p99 = ms(re.search(r"99%\s+(\S+)", t).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errs = int(non2xx.group(1)) if non2xx else 0
print(f"{rps:.1f} {p50:.3f} {p99:.3f} {errs}")
PY
}

port_free 5056
(cd "$WORK" && exec setsid taskset -c 0 "$MLP" serve bench-houses --port 5056 >/dev/null 2>&1) &
PIDS+=($!)
wait_for http://127.0.0.1:5056/health

declare -A R
R[mlp_one_inv]=$(load http://127.0.0.1:5056/invocations "$WORK/one_split.lua" "$SECS")
R[mlp_one_v1]=$(load http://127.0.0.1:5056/v1/predict "$WORK/one_records.lua" "$SECS")
R[mlp_batch]=$(load http://127.0.0.1:5056/invocations "$WORK/batch_split.lua" "$SECS")

PEER=0
if python3 -c "import mlflow, sklearn" 2>/dev/null; then
    PEER=1
    python3 "$SHARED/peer_mlflow_model.py" "$WORK/houses.csv" "$WORK/mlflow_model" >/dev/null 2>&1
    port_free 5055
    (cd "$WORK" && exec setsid taskset -c 0 mlflow models serve -m "$WORK/mlflow_model" -p 5055 --env-manager local >"$WORK/mlflow.log" 2>&1) &
    PIDS+=($!)
    wait_for http://127.0.0.1:5055/ping
    R[mlflow_one]=$(load http://127.0.0.1:5055/invocations "$WORK/one_split.lua" "$SECS")
    R[mlflow_batch]=$(load http://127.0.0.1:5055/invocations "$WORK/batch_split.lua" "$SECS")
fi

row() { read -r rps p50 p99 errs <<<"$2"; printf "%-44s %10s req/s  p50 %8s ms  p99 %8s ms  non-2xx %s\n" "$1" "$rps" "$p50" "$p99" "$errs"; }
echo "training rows: $ROWS; wrk -t1 -c8 -d${SECS}s pinned to CPU 1, servers to CPU 0"
row "mlp serve, 1 row, /invocations"            "${R[mlp_one_inv]}"
row "mlp serve, 1 row, /v1/predict"             "${R[mlp_one_v1]}"
row "mlp serve, 10,000 rows, /invocations"      "${R[mlp_batch]}"
if [ "$PEER" = 1 ]; then
    row "mlflow models serve, 1 row, /invocations"   "${R[mlflow_one]}"
    row "mlflow models serve, 10,000 rows"           "${R[mlflow_batch]}"
    python3 - "${R[mlp_one_inv]}" "${R[mlflow_one]}" "${R[mlp_batch]}" "${R[mlflow_batch]}" <<'PY'
import sys
a, b, c, d = (list(map(float, x.split())) for x in sys.argv[1:])
print(f"single row: mlp / mlflow throughput {a[0] / b[0]:.0f}x (goal >= 100x); mlp p99 {a[2]:.3f} ms (goal <= 2 ms)")
print(f"10,000 rows: mlp / mlflow throughput {c[0] / d[0]:.1f}x")
PY
fi
