#!/usr/bin/env bash
# Benchmark: the listing at 1,000 connections while the catalog changes under it (issue 14).
#
# One server per run on a fresh database with PRODUCTS seeded. `loadgen browse` reads
# page 1 of the listing with WIDE connections while a seller imports BATCHES batches of
# 1,000 products through POST /api/v1/products/batch, one after another on one kept-alive
# connection: every batch starts a new generation of the listing cache, as products going
# live during a drop do. Reported per store: the listing's req/s and p99, how many times
# the listing read the database (`cache_misses_total` before and after), and the import's
# products/s. Medians of RUNS; `stampede verify` after every run.
#
# Usage: scripts/bench-listing-churn.sh [RUNS]
#   env: STORES ("sqlite postgres"), WIDE (1000), REQUESTS (100000), BATCHES (20),
#        PRODUCTS (50000), OUT, BIN (a stampede binary to measure; default: this tree's
#        release build)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
STORES=${STORES:-"sqlite postgres"}
WIDE=${WIDE:-1000}
REQUESTS=${REQUESTS:-100000}
BATCHES=${BATCHES:-20}
PRODUCTS=${PRODUCTS:-50000}
PORT=18630
OUT=${OUT:-bench-out/listing-churn-$(date -u +%Y%m%dT%H%M%SZ)}
DB=bench_listing_churn
ulimit -n 65536 2>/dev/null || true
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

run() {
  local store=$1 dir=$2 api="http://127.0.0.1:$PORT/api/v1"
  fresh_db "$store" churn.db
  "$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
  "$BIN" admin seed-catalog --count "$PRODUCTS" --stock 10 >/dev/null
  start_server "$PORT" "$dir.server.log"
  local admin partner seller before after
  admin=$(post_json "$api/auth/login" access_token '{"email":"admin@bench.invalid","password":"bench-admin-1"}')
  partner=$(post_json "$api/partners" id '{"name":"Importer","commission_rate_bps":1000}' "$admin")
  post_json "$api/partners/$partner/sellers" id \
    '{"email":"seller@bench.invalid","password":"bench-seller-1"}' "$admin" >/dev/null
  seller=$(post_json "$api/auth/login" access_token '{"email":"seller@bench.invalid","password":"bench-seller-1"}')
  misses() {
    curl -s -H "authorization: Bearer $admin" "http://127.0.0.1:$PORT/metrics" |
      awk '/^cache_misses_total/ { print $2 }'
  }
  before=$(misses)
  "$BIN" loadgen browse --target "http://127.0.0.1:$PORT" --requests "$REQUESTS" --concurrency "$WIDE" \
    --path '/api/v1/products?page=1&size=40' --out "$dir" > "$dir.browse.txt" 2>&1 & local browse=$!
  python3 - "$PORT" "$seller" "$BATCHES" > "$dir.import" <<'PY'
import http.client, json, sys, time
port, token, batches = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
time.sleep(0.3)  # the browsers' connections open first
started = time.monotonic()
for n in range(batches):
    items = [{"name": f"Imported {n}-{i}", "price": 10_000, "stock": 5} for i in range(1000)]
    conn.request("POST", "/api/v1/products/batch", json.dumps({"products": items}), headers)
    answer = conn.getresponse()
    answer.read()
    if answer.status != 201:
        sys.exit(f"batch {n} answered {answer.status}")
print(f"{batches * 1000 / (time.monotonic() - started):.0f}")
PY
  wait "$browse"
  after=$(misses)
  echo $((after - before)) > "$dir.reads"
  stop_server
  "$BIN" verify | tail -n 1
}

for run_no in $(seq 1 "$RUNS"); do
  for store in $STORES; do
    run "$store" "$OUT/$store-run$run_no"
    echo "$store run $run_no: $(head -n 1 "$OUT/$store-run$run_no.browse.txt")"
    echo "  database reads $(cat "$OUT/$store-run$run_no.reads"), import $(cat "$OUT/$store-run$run_no.import") products/s"
  done
done

python3 - "$OUT" "$STORES" "$WIDE" "$BATCHES" <<'PY'
import glob, json, statistics, sys
out, stores, wide, batches = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), int(sys.argv[4])
print(f"\n| store | listing req/s at {wide:,} | p99 ms | database reads | import products/s ({batches} × 1,000) | runs |")
print("|---|---|---|---|---|---|")
for store in stores:
    runs = sorted(glob.glob(f"{out}/{store}-run*/summary.json"))
    if not runs:
        continue
    summaries = [json.load(open(p)) for p in runs]
    stem = [p[: -len("/summary.json")] for p in runs]
    rps = [s["throughput_per_s"] for s in summaries]
    p99 = [s["latency_ms"]["p99"] for s in summaries]
    reads = [int(open(f"{d}.reads").read()) for d in stem]
    imports = [int(open(f"{d}.import").read()) for d in stem]
    med = statistics.median
    print(f"| {store} | {med(rps):,.0f} | {med(p99):.1f} | {med(reads):,.0f} | {med(imports):,.0f} | "
          + " · ".join(f"{r:,.0f}/s, {q:.0f} ms, {d:,} reads" for r, q, d in zip(rps, p99, reads)) + " |")
PY
