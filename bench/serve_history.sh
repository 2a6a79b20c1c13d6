#!/usr/bin/env bash
# Serving a model whose request needs five point-in-time history aggregates
# and a join: trained on gen_shop.py TRAIN customers, served with lookup state
# built from gen_shop.py SERVE customers (1,000,000: about 10M orders).
#
#     bash bench/serve_history.sh [TRAIN] [SERVE] [SECONDS]
#
# Prints the time from `mlp serve` to its first answer (reading the sources,
# checking them, indexing 10M events), the server's resident memory then,
# and single-row request latency (wrk, one thread, 1 and 8 connections; the
# server pinned to CPU 0, wrk to CPU 1) on random customers and dates.
# Goal (issue 13): p99 under 2 ms at single-row load.
# Needs wrk (Debian: apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN=${1:-20000}
SERVE=${2:-1000000}
SECS=${3:-10}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlp-target}
cargo build --release -q -p mlp-cli --bin mlp
MLP="$CARGO_TARGET_DIR/release/mlp"
DATA=${DATA:-$HOME/.cache/mlp-bench-shop}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
for n in "$TRAIN" "$SERVE"; do
    [ -f "$DATA/$n/labels.csv" ] || python3 ../shared/bench/gen_shop.py "$n" "$DATA/$n" >/dev/null
done
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill -- "-$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cp bench/serve_shop.mlp "$WORK/p.mlp"
for f in customers orders labels; do ln -s "$DATA/$TRAIN/$f.csv" "$WORK/$f.csv"; done
(cd "$WORK" && "$MLP" run >/dev/null)
# Serve with the large shop's tables.
for f in customers orders labels; do ln -sf "$DATA/$SERVE/$f.csv" "$WORK/$f.csv"; done
PORT=5077
start=$(date +%s.%N)
(cd "$WORK" && exec setsid taskset -c 0 "$MLP" serve churn --port $PORT >"$WORK/serve.log" 2>&1) &
PID=$!
for _ in $(seq 3000); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break
    sleep 0.1
done
ready=$(date +%s.%N)
rss=$(grep VmRSS "/proc/$(pgrep -f "mlp serve churn --port $PORT" | head -1)/status" | awk '{print $2}')
curl -s "http://127.0.0.1:$PORT/metrics" | grep '^mlp_lookup_rows'
python3 - "$WORK" "$DATA/$SERVE" <<'PY'
import csv, json, random, sys
work, data = sys.argv[1], sys.argv[2]
ids = [int(r["customer_id"]) for r, _ in zip(csv.DictReader(open(f"{data}/customers.csv")), range(200000))]
random.seed(7)
bodies = [json.dumps([{"customer_id": random.choice(ids), "as_of": f"2025-0{random.randint(1, 6)}-01"}]) for _ in range(1000)]
with open(f"{work}/req.lua", "w") as f:
    f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    f.write("local bodies = {" + ",".join("[==[" + b + "]==]" for b in bodies) + "}\n")
    f.write("local i = 0\nrequest = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[i])\nend\n")
PY
curl -s -XPOST "http://127.0.0.1:$PORT/v1/predict" -H 'content-type: application/json' -d '[{"customer_id": 1, "as_of": "2025-03-01"}]'; echo
printf "lookup state from %s customers: ready in %.1f s, resident memory %.0f MiB\n" "$SERVE" "$(echo "$ready - $start" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
for c in 1 8; do
    taskset -c 1 wrk -t1 -c$c -d"${SECS}s" --latency -s "$WORK/req.lua" "http://127.0.0.1:$PORT/v1/predict" > "$WORK/wrk.txt"
    python3 - "$WORK/wrk.txt" "$c" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(s):
    v, u = re.match(r"([\d.]+)(us|ms|s)", s).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50, p99 = (ms(re.search(rf"{p}%\s+(\S+)", t).group(1)) for p in ("50", "99"))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"1 row, {sys.argv[2]} connection(s): {rps:.0f} req/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms  non-2xx {non2xx.group(1) if non2xx else 0}")
PY
done
