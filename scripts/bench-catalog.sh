#!/usr/bin/env bash
# Benchmark: creating a catalog in batches (issue 14), products per second.
#
# - seed: `stampede admin seed-catalog --count PRODUCTS` on a fresh database (the time it
#         prints: the batches alone, migrations excluded), RUNS times per store.
# - api:  POST /api/v1/products/batch from one client on one kept-alive connection, BATCH
#         products per request, one request after another, until PRODUCTS exist; timed by
#         the client from the first request to the last answer, against a fresh database
#         per run.
# Medians of RUNS. The machine may be shared: the table says which one it ran on.
#
# Usage: scripts/bench-catalog.sh [RUNS]
#   env: STORES ("sqlite postgres"), PRODUCTS (50000), BATCH (1000), OUT,
#        BIN (a stampede binary to measure, e.g. an older build; default: this tree's
#        release build), SKIP_API=1 (seed only: a binary older than the batch route)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
STORES=${STORES:-"sqlite postgres"}
PRODUCTS=${PRODUCTS:-50000}
BATCH=${BATCH:-1000}
PORT=18620
OUT=${OUT:-bench-out/catalog-$(date -u +%Y%m%dT%H%M%SZ)}
DB=bench_catalog
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

# The request bodies, BATCH products each, written once.
python3 - "$OUT" "$PRODUCTS" "$BATCH" <<'PY'
import json, sys
out, total, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for n, start in enumerate(range(0, total, batch)):
    items = [{"name": f"Imported product {i}", "price": 10_000 + (i % 500) * 1_000, "stock": 100}
             for i in range(start, min(start + batch, total))]
    with open(f"{out}/batch-{n:05}.json", "w") as f:
        json.dump({"products": items}, f)
PY

api_run() {
  "$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
  start_server "$PORT" "$OUT/server-$1.log"
  local api="http://127.0.0.1:$PORT/api/v1" token partner seller
  token=$(post_json "$api/auth/login" access_token '{"email":"admin@bench.invalid","password":"bench-admin-1"}')
  partner=$(post_json "$api/partners" id '{"name":"Importer","commission_rate_bps":1000}' "$token")
  post_json "$api/partners/$partner/sellers" id \
    '{"email":"seller@bench.invalid","password":"bench-seller-1"}' "$token" >/dev/null
  seller=$(post_json "$api/auth/login" access_token '{"email":"seller@bench.invalid","password":"bench-seller-1"}')
  # One client on one kept-alive connection, as an importer would send its files: the
  # figure is the server's, not a process started per request.
  python3 - "$OUT" "$PORT" "$seller" "$PRODUCTS" <<'PY'
import glob, http.client, sys, time
out, port, token, products = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
bodies = [open(path, "rb").read() for path in sorted(glob.glob(f"{out}/batch-*.json"))]
headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
conn = http.client.HTTPConnection("127.0.0.1", port)
started = time.monotonic()
for n, body in enumerate(bodies):
    conn.request("POST", "/api/v1/products/batch", body, headers)
    answer = conn.getresponse()
    answer.read()
    if answer.status != 201:
        sys.exit(f"batch {n} answered {answer.status}")
print(f"{products / (time.monotonic() - started):.0f}")
PY
  stop_server
}

for store in $STORES; do
  for run in $(seq 1 "$RUNS"); do
    fresh_db "$store" catalog.db
    line=$("$BIN" admin seed-catalog --count "$PRODUCTS" --stock 100)
    secs=$(sed -E 's/.* in ([0-9.]+)s( .*)?$/\1/' <<<"$line")
    python3 -c "print(f'{$PRODUCTS / $secs:.0f}')" > "$OUT/seed-$store-run$run"
    echo "$store seed run $run: $line"
    "$BIN" verify | tail -n 1
    if [ -z "${SKIP_API:-}" ]; then
      fresh_db "$store" catalog.db
      api_run "$store-run$run" > "$OUT/api-$store-run$run"
      echo "$store api run $run: $(cat "$OUT/api-$store-run$run") products/s"
      "$BIN" verify | tail -n 1
    fi
  done
done

python3 - "$OUT" "$STORES" "$PRODUCTS" "$BATCH" <<'PY'
import glob, statistics, sys
out, stores, products, batch = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4]
print(f"\n| store | path | products | products/s (median) | runs |")
print("|---|---|---|---|---|")
for store in stores:
    for path, label in (("seed", "admin seed-catalog"), ("api", f"POST /products/batch ({batch} per request)")):
        runs = [int(open(p).read()) for p in sorted(glob.glob(f"{out}/{path}-{store}-run*"))]
        if runs:
            print(f"| {store} | {label} | {products:,} | {statistics.median(runs):,.0f} | {', '.join(f'{r:,}' for r in runs)} |")
PY
