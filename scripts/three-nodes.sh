#!/usr/bin/env bash
# Three `stampede serve` nodes on one PostgreSQL database and one Redis, and one drop
# spread over all three by the load generator: exactly the stock must be sold and
# `stampede verify` must be clean. Exits non-zero otherwise.
#
# Usage: scripts/three-nodes.sh     (env: BUYERS 3000, ATTEMPTS 3000, STOCK 300,
#                                    CONCURRENCY 600, OUT bench-out/three-nodes-<ts>)
set -euo pipefail
cd "$(dirname "$0")/.."
BUYERS=${BUYERS:-3000}
ATTEMPTS=${ATTEMPTS:-3000}
STOCK=${STOCK:-300}
CONCURRENCY=${CONCURRENCY:-600}
PORTS=(18701 18702 18703)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
OUT=${OUT:-bench-out/three-nodes-$(date -u +%Y%m%dT%H%M%SZ)}
BIN="$CARGO_TARGET_DIR/release/stampede"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=stampede_three_nodes

ulimit -n 65536 2>/dev/null || true
cargo build --release --quiet
mkdir -p "$OUT"
scripts/services.sh postgres redis

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
export STAMPEDE_DATABASE_URL="${PG_ADMIN_URL%/*}/$DB"
export STAMPEDE_REDIS_URL=${STAMPEDE_REDIS_URL:-redis://127.0.0.1:6379}
export STAMPEDE_REDIS_PREFIX="three-nodes-$$:"
# Every attempt comes from 127.0.0.1: the per-IP limit would measure itself.
export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0
"$BIN" migrate >/dev/null
"$BIN" admin create-user --email admin@three.invalid --password three-admin-1 --role admin >/dev/null
"$BIN" admin provision-buyers --count "$BUYERS" --out "$OUT/tokens.txt" >/dev/null

targets=()
for port in "${PORTS[@]}"; do
  STAMPEDE_HTTP_ADDR=127.0.0.1:$port RUST_LOG=warn "$BIN" serve > "$OUT/node-$port.log" 2>&1 &
  pids+=($!)
  targets+=(--target "http://127.0.0.1:$port")
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done

token=$(curl -s "http://127.0.0.1:${PORTS[0]}/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"admin@three.invalid","password":"three-admin-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
STAMPEDE_ADMIN_TOKEN=$token "$BIN" loadgen drop "${targets[@]}" --tokens "$OUT/tokens.txt" \
  --stock "$STOCK" --attempts "$ATTEMPTS" --concurrency "$CONCURRENCY" --out "$OUT/drop"
"$BIN" verify
python3 - "$OUT/drop/summary.json" "$STOCK" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); stock = int(sys.argv[2])
print(f"three nodes: {s['attempts']} attempts, sold {s['sold']} of {stock}, oversold {s['oversold']}, "
      f"{s['throughput_per_s']:.0f} attempts/s, p99 {s['latency_ms']['p99']:.1f} ms")
sys.exit(0 if s["sold"] == stock and s["oversold"] == 0 else 1)
PY
