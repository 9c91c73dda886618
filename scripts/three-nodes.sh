#!/usr/bin/env bash
# Three `stampede serve` nodes on one PostgreSQL database and one Redis, and one drop
# spread over all three by the load generator: exactly the stock must be sold and
# `stampede verify` must be clean. Exits non-zero otherwise. The cluster itself is
# scripts/cluster.sh, shared with scripts/faults.sh.
#
# Usage: scripts/three-nodes.sh     (env: BUYERS 3000, ATTEMPTS 3000, STOCK 300,
#                                    CONCURRENCY 600, OUT bench-out/three-nodes-<ts>)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cluster.sh
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

cleanup() {
  cluster_stop
  cluster_drop_db "$PG_ADMIN_URL" "$DB"
}
trap cleanup EXIT

STAMPEDE_DATABASE_URL=$(cluster_create_db "$PG_ADMIN_URL" "$DB")
export STAMPEDE_DATABASE_URL
export STAMPEDE_REDIS_URL=${STAMPEDE_REDIS_URL:-redis://127.0.0.1:6379}
export STAMPEDE_REDIS_PREFIX="three-nodes-$$:"
cluster_prepare "$BUYERS"
cluster_start "${PORTS[@]}"
mapfile -t targets < <(cluster_targets "${PORTS[@]}")
token=$(cluster_admin_token "${PORTS[0]}")

STAMPEDE_ADMIN_TOKEN=$token "$BIN" loadgen drop "${targets[@]}" \
  --tokens "$OUT/tokens.txt" --stock "$STOCK" --attempts "$ATTEMPTS" --concurrency "$CONCURRENCY" \
  --out "$OUT/drop"
RUST_LOG=${RUST_LOG:-warn} "$BIN" verify
python3 - "$OUT/drop/summary.json" "$STOCK" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); stock = int(sys.argv[2])
print(f"three nodes: {s['attempts']} attempts, sold {s['sold']} of {stock}, oversold {s['oversold']}, "
      f"{s['throughput_per_s']:.0f} attempts/s, p99 {s['latency_ms']['p99']:.1f} ms")
sys.exit(0 if s["sold"] == stock and s["oversold"] == 0 else 1)
PY
