#!/usr/bin/env bash
# Benchmark: one hot product under a burst of buyers, on SQLite and on PostgreSQL, with the
# naive baseline (batch of one), the batching placement writer, and optionally the seeds'
# Redis-lock-per-product strategy, plus the trivial endpoint's ceiling measured by the same
# client. Configurations are interleaved run by run so machine noise spreads evenly; the
# table reports medians.
#
# Usage: scripts/bench-drop.sh [RUNS]
#   env: BUYERS (1000), CONCURRENCY (= BUYERS), ATTEMPTS (5000), STOCK (= ATTEMPTS),
#        STORES ("sqlite postgres"), CONFIGS ("batch1 batch256"; also "lock"), OUT
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
ATTEMPTS=${ATTEMPTS:-5000}
STOCK=${STOCK:-$ATTEMPTS}
BUYERS=${BUYERS:-1000}
CONCURRENCY=${CONCURRENCY:-$BUYERS}
CONFIGS=${CONFIGS:-"batch1 batch256"}
STORES=${STORES:-"sqlite postgres"}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PORT=18500
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
OUT=${OUT:-bench-out/drop-$(date -u +%Y%m%dT%H%M%SZ)}
BIN="$CARGO_TARGET_DIR/release/stampede"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}

ulimit -n 65536 2>/dev/null || true
cargo build --release --quiet
mkdir -p "$OUT"
scripts/services.sh postgres redis

server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

fresh_database() { # store name -> database URL
  case "$1" in
    sqlite) rm -f "$OUT/$2.db"*; echo "sqlite://$PWD/$OUT/$2.db" ;;
    postgres)
      psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" -c "CREATE DATABASE $2" >/dev/null
      echo "${PG_ADMIN_URL%/*}/$2" ;;
  esac
}

drop_database() {
  [ "$1" = postgres ] && psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" >/dev/null
  [ "$1" = sqlite ] && rm -f "$OUT/$2.db"*
  return 0
}

# run_one STORE CONFIG RUN   (CONFIG: batchN = placement writer with batches of N; lock)
run_one() {
  local store=$1 config=$2 run=$3 name="bench_${1}_${2}_r${3}" dir="$OUT/$1-$2-run$3"
  export STAMPEDE_DATABASE_URL; STAMPEDE_DATABASE_URL=$(fresh_database "$store" "$name")
  export STAMPEDE_HTTP_ADDR=127.0.0.1:$PORT STAMPEDE_PLACEMENT_BATCH_MAX=1 STAMPEDE_PLACEMENT_STRATEGY=batch
  # Benchmarks measure placement, not the per-IP limit every attempt shares on loopback.
  export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0 STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
  unset STAMPEDE_REDIS_URL
  case "$config" in
    batch*) STAMPEDE_PLACEMENT_BATCH_MAX=${config#batch} ;;
    lock) STAMPEDE_PLACEMENT_STRATEGY=lock; export STAMPEDE_REDIS_URL=$REDIS_URL STAMPEDE_REDIS_PREFIX="$name-$(date +%s%N):" ;;
  esac
  "$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
  "$BIN" admin provision-buyers --count $BUYERS --out "$OUT/tokens.txt" >/dev/null
  RUST_LOG=warn "$BIN" serve > "$OUT/$name.log" 2>&1 & server_pid=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
  local token
  token=$(curl -s "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@bench.invalid","password":"bench-admin-1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  if [ "$config" = "$(echo $CONFIGS | awk '{print $NF}')" ] && [ "$store" = "$(echo $STORES | awk '{print $1}')" ]; then
    "$BIN" loadgen hello --target "http://127.0.0.1:$PORT" --requests 50000 --concurrency 100 --out "$OUT/hello-run$run" >/dev/null
  fi
  STAMPEDE_ADMIN_TOKEN=$token "$BIN" loadgen drop --target "http://127.0.0.1:$PORT" --tokens "$OUT/tokens.txt" \
    --stock "$STOCK" --attempts "$ATTEMPTS" --concurrency $CONCURRENCY --out "$dir" | tail -n 1
  STAMPEDE_DATABASE_URL=$STAMPEDE_DATABASE_URL "$BIN" verify | tail -n 1
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  drop_database "$store" "$name"
}

for run in $(seq 1 "$RUNS"); do
  for store in $STORES; do
    for config in $CONFIGS; do
      echo "== run $run: $store, $config"
      run_one "$store" "$config" "$run"
    done
  done
done

python3 - "$OUT" "$CONFIGS" <<'PY'
import glob, json, os, statistics, sys
out, configs = sys.argv[1], sys.argv[2].split()
def med(paths, key):
    vals = [key(json.load(open(p))) for p in paths]
    return statistics.median(vals) if vals else float("nan")
rows = []
for store in ("sqlite", "postgres"):
    for config in configs:
        paths = sorted(glob.glob(f"{out}/{store}-{config}-run*/summary.json"))
        if not paths:
            continue
        rows.append((store, config, len(paths),
                     med(paths, lambda s: s["throughput_per_s"]),
                     med(paths, lambda s: s["latency_ms"]["p50"]),
                     med(paths, lambda s: s["latency_ms"]["p99"]),
                     med(paths, lambda s: s["sold"]), med(paths, lambda s: s["oversold"])))
hello = sorted(glob.glob(f"{out}/hello-run*/summary.json"))
print(f"\n| store | placement | runs | attempts/s (median) | p50 ms | p99 ms | sold | oversold |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:,.0f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.0f} | {r[7]:.0f} |")
if hello:
    print(f"\nGET /healthz ceiling, same client, 100 connections: {med(hello, lambda s: s['throughput_per_s']):,.0f} req/s (median of {len(hello)})")
PY
