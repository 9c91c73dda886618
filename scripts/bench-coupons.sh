#!/usr/bin/env bash
# Benchmark: seed 002's first-come coupon burst — 50,000 claims for 1,000 coupons — on
# SQLite, on PostgreSQL, and with the Redis gate in front of each, beside the trivial
# endpoint's ceiling measured by the same client in the same run. Configurations are
# interleaved run by run; the table reports medians.
#
# Usage: scripts/bench-coupons.sh [RUNS]
#   env: BUYERS (50000: every claim a different buyer), ATTEMPTS (50000), TOTAL (1000),
#        CONCURRENCY (500), STORES ("sqlite postgres"), MODES ("db redis"), OUT,
#        NODES ("1"; a list such as "1 3" interleaves node counts; more than one node
#        needs STORES=postgres: the claims are spread round-robin over that many servers
#        sharing the database, and Redis in the "redis" mode)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
BUYERS=${BUYERS:-50000}
ATTEMPTS=${ATTEMPTS:-50000}
TOTAL=${TOTAL:-1000}
CONCURRENCY=${CONCURRENCY:-500}
STORES=${STORES:-"sqlite postgres"}
MODES=${MODES:-"db redis"}
NODES=${NODES:-1}
PORT=18800
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
OUT=${OUT:-bench-out/coupons-$(date -u +%Y%m%dT%H%M%SZ)}
BIN="$CARGO_TARGET_DIR/release/stampede"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

ulimit -n 65536 2>/dev/null || true
cargo build --release --quiet
mkdir -p "$OUT"
scripts/services.sh postgres redis
if [ "$NODES" != 1 ] && [ "$STORES" != postgres ]; then
  echo "NODES=$NODES needs STORES=postgres (nodes share one database)" >&2; exit 2
fi
server_pids=()
cleanup() { for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# run_one STORE MODE RUN NODES
run_one() {
  local store=$1 mode=$2 run=$3 nodes=$4 name="bench_coupons_${1}_${2}_n${4}_r${3}"
  local dir="$OUT/$1-$2-n$4-run$3"
  case "$store" in
    sqlite) rm -f "$OUT/$name.db"*; export STAMPEDE_DATABASE_URL="sqlite://$PWD/$OUT/$name.db" ;;
    postgres)
      psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
      export STAMPEDE_DATABASE_URL="${PG_ADMIN_URL%/*}/$name" ;;
  esac
  export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0 STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
  unset STAMPEDE_REDIS_URL
  # A prefix of its own per run: keys of an earlier run (same names, other database) live on.
  [ "$mode" = redis ] && export STAMPEDE_REDIS_URL=$REDIS_URL STAMPEDE_REDIS_PREFIX="$name-$(date +%s%N):"
  "$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
  "$BIN" admin provision-buyers --count "$BUYERS" --out "$OUT/tokens.txt" >/dev/null
  local targets=()
  for node in $(seq 0 $((nodes - 1))); do
    STAMPEDE_HTTP_ADDR=127.0.0.1:$((PORT + node)) RUST_LOG=warn "$BIN" serve > "$OUT/$name-node$node.log" 2>&1 &
    server_pids+=($!)
    targets+=(--target "http://127.0.0.1:$((PORT + node))")
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((PORT + node))/readyz" >/dev/null && break; sleep 0.1; done
  done
  local token
  token=$(curl -s "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@bench.invalid","password":"bench-admin-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  if [ "$store" = "$(echo $STORES | awk '{print $1}')" ] && [ "$mode" = "$(echo $MODES | awk '{print $1}')" ] \
    && [ "$nodes" = "$(echo $NODES | awk '{print $1}')" ]; then
    "$BIN" loadgen hello --target "http://127.0.0.1:$PORT" --requests 50000 --concurrency 100 --out "$OUT/hello-run$run" | tail -n 2
  fi
  STAMPEDE_ADMIN_TOKEN=$token "$BIN" loadgen coupon-burst "${targets[@]}" --tokens "$OUT/tokens.txt" \
    --total "$TOTAL" --attempts "$ATTEMPTS" --concurrency "$CONCURRENCY" --out "$dir" | tail -n 2
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  server_pids=()
  "$BIN" verify | tail -n 1
  [ "$store" = postgres ] && psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
  [ "$store" = sqlite ] && rm -f "$OUT/$name.db"*
  return 0
}

for run in $(seq 1 "$RUNS"); do
  for store in $STORES; do
    for mode in $MODES; do
      for nodes in $NODES; do
        echo "== run $run: $store, $mode, $nodes node(s)"
        run_one "$store" "$mode" "$run" "$nodes"
      done
    done
  done
done

python3 - "$OUT" <<'PY'
import glob, json, statistics, sys
out = sys.argv[1]
def med(paths, key):
    return statistics.median(key(json.load(open(p))) for p in paths)
hello = sorted(glob.glob(f"{out}/hello-run*/summary.json"))
ceiling = med(hello, lambda s: s["throughput_per_s"]) if hello else None
print("\n| store | gate | nodes | runs | claims/s (median) | of ceiling | mean ms | p50 ms | p99 ms | issued |")
print("|---|---|---|---|---|---|---|---|---|---|")
for store in ("sqlite", "postgres"):
    for mode in ("db", "redis"):
        for nodes in range(1, 10):
            paths = sorted(glob.glob(f"{out}/{store}-{mode}-n{nodes}-run*/summary.json"))
            if paths:
                rate = med(paths, lambda s: s['throughput_per_s'])
                share = f"{rate / ceiling:.0%}" if ceiling else "-"
                print(f"| {store} | {'Redis Lua' if mode == 'redis' else 'database only'} | {nodes} | {len(paths)} | "
                      f"{rate:,.0f} | {share} | {med(paths, lambda s: s['latency_ms']['mean']):.1f} | "
                      f"{med(paths, lambda s: s['latency_ms']['p50']):.1f} | "
                      f"{med(paths, lambda s: s['latency_ms']['p99']):.1f} | {med(paths, lambda s: s.get('issued', s.get('sold', 0))):.0f} |")
if hello:
    print(f"\nGET /healthz ceiling, same client, 100 connections: {ceiling:,.0f} req/s (median of {len(hello)})")
PY
