#!/usr/bin/env bash
# Benchmark: the Kafka relay under a sustained drop on PostgreSQL (issue 9). One node, a
# private Tansu broker, and an open-loop drop at RATE attempts/s with stock for all of them,
# so every attempt places an order (order.placed + stock.changed in the outbox). Runs with
# Kafka off and on are interleaved (off, on, on, off, …) so noise spreads evenly. Reports
# per run and as medians: orders placed/s, outbox events committed/s, events the relay
# published/s in the same window, the relay's lag p99 (commit → broker ack, from its
# histogram), and how long after the last order the relay had everything.
#
# Usage: scripts/bench-relay.sh [RUNS]
#   env: RATE (1500), SECONDS_PER_RUN (20), BUYERS (1000), CONCURRENCY (500), OUT
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
RATE=${RATE:-1500}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
ATTEMPTS=$(python3 -c "print(int($RATE * $SECONDS_PER_RUN))")
BUYERS=${BUYERS:-1000}
CONCURRENCY=${CONCURRENCY:-500}
PORT=18600
KAFKA_PORT=19192
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
OUT=${OUT:-bench-out/relay-$(date -u +%Y%m%dT%H%M%SZ)}
BIN="$CARGO_TARGET_DIR/release/stampede"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}

ulimit -n 65536 2>/dev/null || true
export RUST_LOG=warn
cargo build --release --quiet --features kafka
mkdir -p "$OUT"
scripts/services.sh postgres
TANSU=${TANSU_BIN:-$(scripts/services.sh tansu-bin)}

server_pid="" broker_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
}
trap cleanup EXIT

metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# run_one CONFIG RUN   (CONFIG: off = no Kafka; on = relay and workers on a fresh broker)
run_one() {
  local config=$1 run=$2 name="bench_relay_${1}_r${2}" dir="$OUT/$1-run$2"
  mkdir -p "$dir"
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
  export STAMPEDE_DATABASE_URL="${PG_ADMIN_URL%/*}/$name" STAMPEDE_HTTP_ADDR=127.0.0.1:$PORT
  export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0 STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
  unset STAMPEDE_KAFKA_BROKERS
  if [ "$config" = on ]; then
    "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
      > "$dir/broker.log" 2>&1 & broker_pid=$!
    export STAMPEDE_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
  fi
  "$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
  "$BIN" admin provision-buyers --count "$BUYERS" --out "$OUT/tokens.txt" >/dev/null
  "$BIN" serve > "$dir/server.log" 2>&1 & server_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  local token
  token=$(curl -s "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@bench.invalid","password":"bench-admin-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  local head_before published_before
  head_before=$(psql -qAt "$STAMPEDE_DATABASE_URL" -c "SELECT COALESCE(MAX(id), 0) FROM outbox")
  # The buyers' user.created events were written before the node started: let the relay
  # publish that backlog first, and count the lag of the drop's events only.
  if [ "$config" = on ]; then
    until [ "$(psql -qAt "$STAMPEDE_DATABASE_URL" -c "SELECT COALESCE(MAX(last_event_id), 0) FROM relay_progress")" -ge "$head_before" ]; do
      sleep 0.05
    done
  fi
  curl -s "http://127.0.0.1:$PORT/metrics" | grep '^relay_lag_seconds' > "$dir/relay_lag_before.txt" || true
  published_before=$(metric relay_published_total); published_before=${published_before:-0}
  STAMPEDE_ADMIN_TOKEN=$token "$BIN" loadgen drop --target "http://127.0.0.1:$PORT" --tokens "$OUT/tokens.txt" \
    --stock "$ATTEMPTS" --attempts "$ATTEMPTS" --rate "$RATE" --concurrency "$CONCURRENCY" --out "$dir" | tail -n 1
  local published_at_end head_after drained_ms=0
  published_at_end=$(metric relay_published_total); published_at_end=${published_at_end:-0}
  head_after=$(psql -qAt "$STAMPEDE_DATABASE_URL" -c "SELECT COALESCE(MAX(id), 0) FROM outbox")
  if [ "$config" = on ]; then
    local start; start=$(date +%s%N)
    until [ "$(psql -qAt "$STAMPEDE_DATABASE_URL" -c "SELECT COALESCE(MAX(last_event_id), 0) FROM relay_progress")" -ge "$head_after" ]; do
      sleep 0.02
    done
    drained_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  fi
  curl -s "http://127.0.0.1:$PORT/metrics" | grep '^relay_lag_seconds' > "$dir/relay_lag.txt" || true
  python3 - "$dir" "$head_before" "$head_after" "$published_before" "$published_at_end" "$drained_ms" <<'PY'
import json, sys
d, h0, h1, p0, p1, drained = sys.argv[1], *map(float, sys.argv[2:])
s = json.load(open(f"{d}/summary.json"))
dur = s["duration_s"]
def read(path):
    counts = {}
    for line in open(path):
        if line.startswith("relay_lag_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            counts[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
    return counts
before, after = read(f"{d}/relay_lag_before.txt"), read(f"{d}/relay_lag.txt")
buckets = sorted((le, n - before.get(le, 0)) for le, n in after.items())
total = buckets[-1][1] if buckets else 0
p99 = next((le for le, n in buckets if total and n >= 0.99 * total), float("nan"))
json.dump({"orders_per_s": s["facts"]["sold"] / dur if "facts" in s else s["sold"] / dur,
           "events_committed_per_s": (h1 - h0) / dur, "events_published_per_s": (p1 - p0) / dur,
           "relay_lag_p99_le_s": p99, "drained_after_ms": drained, "sold": s.get("sold"),
           "duration_s": dur}, open(f"{d}/relay.json", "w"))
PY
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  if [ -n "$broker_pid" ]; then kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true; broker_pid=""; fi
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
}

for run in $(seq 1 "$RUNS"); do
  if [ $((run % 2)) = 1 ]; then order="off on"; else order="on off"; fi
  for config in $order; do
    echo "== run $run: kafka $config"
    run_one "$config" "$run"
  done
done

python3 - "$OUT" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
print("\n| kafka | run | orders placed/s | outbox events/s | events published/s (same window) | relay lag p99 ≤ s | relay done after last order |")
print("|---|---|---|---|---|---|---|")
med = {}
for config in ("off", "on"):
    rows = [json.load(open(p)) for p in sorted(glob.glob(f"{out}/{config}-run*/relay.json"))]
    for i, r in enumerate(rows, 1):
        pub = f"{r['events_published_per_s']:,.0f}" if config == "on" else "–"
        lag = f"{r['relay_lag_p99_le_s']}" if config == "on" else "–"
        done = f"{r['drained_after_ms']:.0f} ms" if config == "on" else "–"
        print(f"| {config} | {i} | {r['orders_per_s']:,.0f} | {r['events_committed_per_s']:,.0f} | {pub} | {lag} | {done} |")
    if rows:
        med[config] = statistics.median(r["orders_per_s"] for r in rows)
if "on" in med and "off" in med:
    print(f"\nOrders placed/s with the relay on ÷ off (medians): {med['on'] / med['off']:.2f}")
PY
