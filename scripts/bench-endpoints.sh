#!/usr/bin/env bash
# Benchmark: the order endpoint and the listing endpoint as a fraction of the trivial
# endpoint's ceiling, all three measured by the same load generator against the same
# server process, interleaved run by run; medians reported.
#
# - hello:   GET /healthz                                   (the ceiling)
# - listing: GET /api/v1/products?page=1&size=40           (50,000 products, as seed 003)
# - orders:  POST /api/v1/orders, every attempt places an order (stock = attempts)
# - hello and listing again at WIDE connections (1,000: seed 003's virtual users), the
#   listing against the trivial endpoint at the same width
#
# Usage: scripts/bench-endpoints.sh [RUNS]
#   env: STORE (sqlite|postgres), REQUESTS (30000), CONCURRENCY (100), WIDE (1000),
#        WIDE_REQUESTS (100000), PRODUCTS (50000), OUT
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
STORE=${STORE:-sqlite}
REQUESTS=${REQUESTS:-30000}
CONCURRENCY=${CONCURRENCY:-100}
WIDE=${WIDE:-1000}
# More requests at the wide setting, so its 1,000 connections' opening is not the whole run.
WIDE_REQUESTS=${WIDE_REQUESTS:-100000}
PRODUCTS=${PRODUCTS:-50000}
PORT=18600
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
OUT=${OUT:-bench-out/endpoints-$STORE-$(date -u +%Y%m%dT%H%M%SZ)}
BIN="$CARGO_TARGET_DIR/release/stampede"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=bench_endpoints

ulimit -n 65536 2>/dev/null || true
cargo build --release --quiet
mkdir -p "$OUT"
scripts/services.sh postgres
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ "$STORE" = postgres ] && psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

case "$STORE" in
  sqlite) rm -f "$OUT/endpoints.db"*; export STAMPEDE_DATABASE_URL="sqlite://$PWD/$OUT/endpoints.db" ;;
  postgres)
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
    export STAMPEDE_DATABASE_URL="${PG_ADMIN_URL%/*}/$DB" ;;
esac
export STAMPEDE_HTTP_ADDR=127.0.0.1:$PORT
# Every request comes from 127.0.0.1: the rate limits would measure themselves.
export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0 STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
"$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
"$BIN" admin seed-catalog --count "$PRODUCTS" --stock 10
"$BIN" admin provision-buyers --count 5000 --out "$OUT/tokens.txt" >/dev/null
RUST_LOG=warn "$BIN" serve > "$OUT/server.log" 2>&1 & server_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
token=$(curl -s "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"admin@bench.invalid","password":"bench-admin-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
target=(--target "http://127.0.0.1:$PORT")

for run in $(seq 1 "$RUNS"); do
  echo "== run $run"
  "$BIN" loadgen hello "${target[@]}" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --out "$OUT/hello-run$run" | tail -n 2
  "$BIN" loadgen browse "${target[@]}" --requests "$REQUESTS" --concurrency "$CONCURRENCY" \
    --path '/api/v1/products?page=1&size=40' --out "$OUT/listing-run$run" | tail -n 2
  "$BIN" loadgen hello "${target[@]}" --requests "$WIDE_REQUESTS" --concurrency "$WIDE" --out "$OUT/hellowide-run$run" | tail -n 2
  "$BIN" loadgen browse "${target[@]}" --requests "$WIDE_REQUESTS" --concurrency "$WIDE" \
    --path '/api/v1/products?page=1&size=40' --out "$OUT/listingwide-run$run" | tail -n 2
  STAMPEDE_ADMIN_TOKEN=$token "$BIN" loadgen drop "${target[@]}" --tokens "$OUT/tokens.txt" \
    --stock "$REQUESTS" --attempts "$REQUESTS" --concurrency "$CONCURRENCY" --out "$OUT/orders-run$run" | tail -n 2
done
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
"$BIN" verify | tail -n 1

python3 - "$OUT" "$STORE" "$CONCURRENCY" "$WIDE" <<'PY'
import glob, json, statistics, sys
out, store, narrow, wide = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def med(name, key):
    return statistics.median(key(json.load(open(p))) for p in sorted(glob.glob(f"{out}/{name}-run*/summary.json")))
print(f"\n| endpoint ({store}) | connections | req/s (median) | mean ms | p50 ms | p99 ms | of ceiling | p99 ÷ ceiling's |")
print("|---|---|---|---|---|---|---|---|")
for name, label, ceiling, width in (
        ("hello", "GET /healthz (ceiling)", "hello", narrow),
        ("listing", "GET /products?page=1&size=40", "hello", narrow),
        ("orders", "POST /orders (placed)", "hello", narrow),
        ("hellowide", "GET /healthz (ceiling)", "hellowide", wide),
        ("listingwide", "GET /products?page=1&size=40", "hellowide", wide)):
    rps = med(name, lambda s: s["throughput_per_s"])
    p99 = med(name, lambda s: s["latency_ms"]["p99"])
    print(f"| {label} | {width:,} | {rps:,.0f} | {med(name, lambda s: s['latency_ms']['mean']):.1f} | "
          f"{med(name, lambda s: s['latency_ms']['p50']):.1f} | {p99:.1f} | "
          f"{rps / med(ceiling, lambda s: s['throughput_per_s']):.0%} | "
          f"{p99 / med(ceiling, lambda s: s['latency_ms']['p99']):.2f} |")
PY
