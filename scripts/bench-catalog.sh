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
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
OUT=${OUT:-bench-out/catalog-$(date -u +%Y%m%dT%H%M%SZ)}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=bench_catalog
# The commands' own progress (migrations applied) would bury the figures.
export RUST_LOG=${RUST_LOG:-warn}

if ! command -v curl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
  else
    echo "curl is missing: apt-get install -y curl (as root)" >&2; exit 1
  fi
fi
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN="$CARGO_TARGET_DIR/release/stampede"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
scripts/services.sh postgres
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# A fresh, empty database of STORE; exports its URL.
fresh_db() {
  case "$1" in
    sqlite) rm -f "$OUT/catalog.db"*; export STAMPEDE_DATABASE_URL="sqlite://$OUT/catalog.db" ;;
    postgres)
      psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
      export STAMPEDE_DATABASE_URL="${PG_ADMIN_URL%/*}/$DB" ;;
  esac
}

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
  export STAMPEDE_HTTP_ADDR=127.0.0.1:$PORT
  export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0 STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
  "$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
  RUST_LOG=warn "$BIN" serve > "$OUT/server-$1.log" 2>&1 & server_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  local api="http://127.0.0.1:$PORT/api/v1" token partner seller
  token=$(curl -s "$api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@bench.invalid","password":"bench-admin-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  partner=$(curl -s "$api/partners" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name":"Importer","commission_rate_bps":1000}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -s "$api/partners/$partner/sellers" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"email":"seller@bench.invalid","password":"bench-seller-1"}' >/dev/null
  seller=$(curl -s "$api/auth/login" -H 'content-type: application/json' \
    -d '{"email":"seller@bench.invalid","password":"bench-seller-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
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
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

for store in $STORES; do
  for run in $(seq 1 "$RUNS"); do
    fresh_db "$store"
    line=$("$BIN" admin seed-catalog --count "$PRODUCTS" --stock 100)
    secs=$(sed -E 's/.* in ([0-9.]+)s( .*)?$/\1/' <<<"$line")
    python3 -c "print(f'{$PRODUCTS / $secs:.0f}')" > "$OUT/seed-$store-run$run"
    echo "$store seed run $run: $line"
    "$BIN" verify | tail -n 1
    if [ -z "${SKIP_API:-}" ]; then
      fresh_db "$store"
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
