#!/usr/bin/env bash
# Benchmark: seed 002's order load test (`stampede loadgen orders`: every order with the
# buyer's coupon and points) against a release server, beside GET /healthz measured by the
# same client against the same server process, interleaved run by run; medians reported
# next to the seed's figures (45,000 orders in 10 minutes = 75/s, 380 ms mean, 800 ms p95,
# 1.5% errors).
#
# Each run makes three measurements:
# - hello: GET /healthz, closed loop, 100 connections         (the ceiling)
# - seed:  the seed's test: open loop at RATE orders/s from BUYERS users for DURATION, or
#          with THINK set, its model as such: BUYERS users in a closed loop, each pausing
#          THINK between orders (1,000 users at 13s make about 75 orders/s)
# - max:   the same orders as fast as they go: closed loop, MAX_CONCURRENCY users, no
#          think time, for MAX_DURATION, with MAX_PER_BUYER coupons per buyer
# Every orders run ends with `stampede verify` on the server's database (the run's verdict
# fails unless it is clean); the script exits non-zero if any verdict failed.
#
# Usage: scripts/bench-orders.sh [--pg] [RUNS]
#   --pg: PostgreSQL instead of SQLite
#   env: BUYERS (1000), RATE (75), THINK (unset), DURATION (10m: the seed's; shorter on a
#        shared machine),
#        MAX_CONCURRENCY (100), MAX_DURATION (10s), MAX_PER_BUYER (20), HELLO_REQUESTS
#        (30000), OUT
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=sqlite
if [ "${1:-}" = --pg ]; then STORE=postgres; shift; fi
RUNS=${1:-3}
BUYERS=${BUYERS:-1000}
RATE=${RATE:-75}
DURATION=${DURATION:-10m}
MAX_CONCURRENCY=${MAX_CONCURRENCY:-100}
MAX_DURATION=${MAX_DURATION:-10s}
MAX_PER_BUYER=${MAX_PER_BUYER:-20}
HELLO_REQUESTS=${HELLO_REQUESTS:-30000}
THINK=${THINK:-}
if [ -n "$THINK" ]; then
  seed_load=(--concurrency "$BUYERS" --think "$THINK"); seed_label="$BUYERS users closed loop, think $THINK"
else
  seed_load=(--rate "$RATE" --concurrency "$BUYERS"); seed_label="$RATE/s open loop, $BUYERS users"
fi
PORT=18700
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
OUT=${OUT:-bench-out/orders-$STORE-$(date -u +%Y%m%dT%H%M%SZ)}
case "$OUT" in /*) ;; *) OUT=$PWD/$OUT ;; esac
BIN="$CARGO_TARGET_DIR/release/stampede"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=bench_orders

# What the script itself calls, installed on a fresh Debian machine (quick when present).
need() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}
need curl curl
need python3 python3

ulimit -n 65536 2>/dev/null || true
cargo build --release --quiet
mkdir -p "$OUT"
[ "$STORE" = postgres ] && scripts/services.sh postgres
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ "$STORE" = postgres ] && psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

case "$STORE" in
  sqlite) rm -f "$OUT/orders.db"*; export STAMPEDE_DATABASE_URL="sqlite://$OUT/orders.db" ;;
  postgres)
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
    export STAMPEDE_DATABASE_URL="${PG_ADMIN_URL%/*}/$DB" ;;
esac
export STAMPEDE_HTTP_ADDR=127.0.0.1:$PORT
# Every request comes from 127.0.0.1 and the setup claims dozens of coupons per buyer in
# seconds: the rate limits would measure themselves.
export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0 STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
unset STAMPEDE_REDIS_URL
"$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
"$BIN" admin provision-buyers --count "$BUYERS" --out "$OUT/tokens.txt" >/dev/null
RUST_LOG=warn "$BIN" serve > "$OUT/server.log" 2>&1 & server_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
export STAMPEDE_ADMIN_TOKEN
STAMPEDE_ADMIN_TOKEN=$(curl -s "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"admin@bench.invalid","password":"bench-admin-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
target=(--target "http://127.0.0.1:$PORT")

failed=0
for run in $(seq 1 "$RUNS"); do
  echo "== run $run ($STORE)"
  "$BIN" loadgen hello "${target[@]}" --requests "$HELLO_REQUESTS" --concurrency 100 \
    --out "$OUT/hello-run$run" | tail -n 2
  # The verdict is on the last lines; a failed one is counted, and the other runs go on.
  "$BIN" loadgen orders "${target[@]}" --tokens "$OUT/tokens.txt" --duration "$DURATION" \
    "${seed_load[@]}" --out "$OUT/seed-run$run" | tail -n 11 || failed=$((failed + 1))
  "$BIN" loadgen orders "${target[@]}" --tokens "$OUT/tokens.txt" --duration "$MAX_DURATION" \
    --concurrency "$MAX_CONCURRENCY" --orders-per-buyer "$MAX_PER_BUYER" \
    --out "$OUT/max-run$run" | tail -n 11 || failed=$((failed + 1))
done
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""

python3 - "$OUT" "$STORE" "$seed_label" "$DURATION" "$MAX_CONCURRENCY" "$MAX_DURATION" <<'PY'
import glob, json, statistics, sys
out, store, seed_label, duration, max_c, max_d = sys.argv[1:]
def med(name, key):
    vals = [key(json.load(open(p))) for p in sorted(glob.glob(f"{out}/{name}-run*/summary.json"))]
    return statistics.median(vals) if vals else float("nan")
def runs(name):
    return len(glob.glob(f"{out}/{name}-run*/summary.json"))
hello = med("hello", lambda s: s["throughput_per_s"])
print(f"\n| {store} | runs | answers or orders/s (median) | of ceiling | mean ms | p50 ms | p95 ms | p99 ms | errors | verify clean |")
print("|---|---|---|---|---|---|---|---|---|---|")
print(f"| GET /healthz, 100 connections (ceiling) | {runs('hello')} | {hello:,.0f} | 100% | "
      f"{med('hello', lambda s: s['latency_ms']['mean']):.2f} | {med('hello', lambda s: s['latency_ms']['p50']):.2f} | "
      f"{med('hello', lambda s: s['latency_ms']['p95']):.2f} | {med('hello', lambda s: s['latency_ms']['p99']):.2f} | - | - |")
for name, label in (("seed", f"seed 002's test: {seed_label}, {duration}"),
                    ("max", f"as fast as they go: {max_c} users closed loop, {max_d}")):
    if not runs(name):
        continue
    ops = med(name, lambda s: s["orders_per_s"])
    clean = sum(json.load(open(p))["verify_clean"] for p in glob.glob(f"{out}/{name}-run*/summary.json"))
    print(f"| {label} | {runs(name)} | {ops:,.1f} | {ops / hello:.1%} | "
          f"{med(name, lambda s: s['latency_ms']['mean']):.2f} | {med(name, lambda s: s['latency_ms']['p50']):.2f} | "
          f"{med(name, lambda s: s['latency_ms']['p95']):.2f} | {med(name, lambda s: s['latency_ms']['p99']):.2f} | "
          f"{med(name, lambda s: s['error_rate']):.2%} | {clean}/{runs(name)} |")
print("| seed 002 (its report: 1,000 users, 10 minutes) | - | 75.0 | - | 380 | - | 800 | - | 1.5% | - |")
PY
[ "$failed" -eq 0 ] || { echo "$failed orders run(s) judged WRONG (see above)"; exit 1; }
