#!/usr/bin/env bash
# Benchmark: where a placed order's CPU goes, process by process (issue 14).
#
# One server on a fresh database per run: the trivial endpoint's ceiling
# (`loadgen hello`, REQUESTS at HELLO_CONCURRENCY), then a drop in which every attempt
# places an order (`loadgen drop`, stock = attempts = ORDERS, at CONCURRENCY). The ceiling
# stays at 100 connections whatever the drop's width: on this machine the trivial
# endpoint is fastest there, so a wider drop is not flattered by a lower ceiling. Over a WINDOW-second window in the
# middle of the drop it reads the CPU time (utime + stime, /proc/<pid>/stat) of the
# server, the load generator and every PostgreSQL process, and `orders_placed_total` from
# /metrics, and reports CPU per placed order for each and how many of the machine's cores
# were busy. Medians of RUNS. The trivial endpoint's CPU per request is read the same way,
# over its whole run, as the yardstick. With PERF=1 the window is also recorded with
# `perf record --call-graph dwarf` (the server's threads) into OUT/runN.perf.data.
#
# Usage: scripts/bench-cpu-per-order.sh [RUNS]
#   env: STORE (sqlite|postgres), ORDERS (40000), REQUESTS (30000), CONCURRENCY (100),
#        HELLO_CONCURRENCY (100),
#        WINDOW (2), OUT, BIN (a stampede binary; default: this tree's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
STORE=${STORE:-sqlite}
ORDERS=${ORDERS:-40000}
REQUESTS=${REQUESTS:-30000}
CONCURRENCY=${CONCURRENCY:-100}
HELLO_CONCURRENCY=${HELLO_CONCURRENCY:-100}
WINDOW=${WINDOW:-2}
PORT=18640
OUT=${OUT:-bench-out/cpu-per-order-$STORE-$(date -u +%Y%m%dT%H%M%SZ)}
DB=bench_cpu_per_order
TICKS=$(getconf CLK_TCK)
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
ulimit -n 65536 2>/dev/null || true # a wide drop holds a connection per buyer

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
postgres_ticks() {
  local pid total=0
  for pid in $(pgrep -u postgres || true); do
    total=$((total + $(ticks "$pid" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

run() {
  local dir=$1 url="http://127.0.0.1:$PORT"
  fresh_db "$STORE" cpu.db
  "$BIN" admin create-user --email admin@bench.invalid --password bench-admin-1 --role admin >/dev/null
  "$BIN" admin provision-buyers --count 3000 --out "$OUT/tokens.txt" >/dev/null
  start_server "$PORT" "$dir.server.log"
  local token
  token=$(post_json "$url/api/v1/auth/login" access_token '{"email":"admin@bench.invalid","password":"bench-admin-1"}')
  local h0 hl0 h1 hl1
  h0=$(ticks "$server_pid")
  "$BIN" loadgen hello --target "$url" --requests "$REQUESTS" --concurrency "$HELLO_CONCURRENCY" \
    --out "$dir-hello" >/dev/null &
  local hello=$!
  hl0=$(ticks "$hello"); hl1=$hl0
  # The load generator's ticks are read just before it exits.
  while [ ! -f "$dir-hello/summary.json" ] && kill -0 "$hello" 2>/dev/null; do
    hl1=$(ticks "$hello" 2>/dev/null || echo "${hl1:-0}"); sleep 0.02
  done
  wait "$hello"
  h1=$(ticks "$server_pid")
  STAMPEDE_ADMIN_TOKEN=$token "$BIN" loadgen drop --target "$url" --tokens "$OUT/tokens.txt" \
    --stock "$ORDERS" --attempts "$ORDERS" --concurrency "$CONCURRENCY" --out "$dir-drop" >/dev/null &
  local loadgen=$!
  placed() {
    curl -s -H "authorization: Bearer $token" "$url/metrics" | awk '/^orders_placed_total/ { print $2 }'
  }
  # Into the drop, past its first batches.
  until awk -v n="$(placed)" -v min=$((ORDERS / 10)) 'BEGIN { exit !(n + 0 >= min) }'; do
    kill -0 "$loadgen" 2>/dev/null || { echo "the drop ended before the window" >&2; exit 1; }
    sleep 0.05
  done
  local o0 s0 l0 p0 t0 o1 s1 l1 p1 t1
  o0=$(placed); s0=$(ticks "$server_pid"); l0=$(ticks "$loadgen"); p0=$(postgres_ticks); t0=$(date +%s.%N)
  if [ -n "${PERF:-}" ]; then
    perf record -q -F 1999 --call-graph dwarf,16384 -p "$server_pid" -o "$dir.perf.data" -- sleep "$WINDOW" 2>/dev/null
  else
    sleep "$WINDOW"
  fi
  o1=$(placed); s1=$(ticks "$server_pid"); l1=$(ticks "$loadgen"); p1=$(postgres_ticks); t1=$(date +%s.%N)
  wait "$loadgen"
  stop_server
  "$BIN" verify | tail -n 1
  python3 - "$dir.json" "$o0" "$o1" "$s0" "$s1" "$l0" "$l1" "$p0" "$p1" "$t0" "$t1" "$TICKS" \
    "$h0" "$h1" "$hl0" "$hl1" "$REQUESTS" "$dir" <<'PY'
import json, sys
path = sys.argv[1]
o0, o1, s0, s1, l0, l1, p0, p1, t0, t1, hz, h0, h1, hl0, hl1, requests = map(float, sys.argv[2:18])
run = sys.argv[18]
orders, secs = o1 - o0, t1 - t0
us = lambda ticks: ticks / hz * 1e6 / orders
row = {
    "ceiling": json.load(open(f"{run}-hello/summary.json"))["throughput_per_s"],
    "drop": json.load(open(f"{run}-drop/summary.json"))["throughput_per_s"],
    "window_orders_per_s": orders / secs,
    "server_us": us(s1 - s0), "postgres_us": us(p1 - p0), "loadgen_us": us(l1 - l0),
    "cores_busy": ((s1 - s0) + (p1 - p0) + (l1 - l0)) / hz / secs,
    "hello_server_us": (h1 - h0) / hz * 1e6 / requests,
    "hello_loadgen_us": (hl1 - hl0) / hz * 1e6 / requests,
}
row["total_us"] = row["server_us"] + row["postgres_us"] + row["loadgen_us"]
json.dump(row, open(path, "w"))
print(f"window {row['window_orders_per_s']:,.0f} orders/s; per order: server {row['server_us']:.0f} µs, "
      f"PostgreSQL {row['postgres_us']:.0f} µs, load generator {row['loadgen_us']:.0f} µs; "
      f"{row['cores_busy']:.2f} cores busy; /healthz per request: server {row['hello_server_us']:.0f} µs, "
      f"load generator {row['hello_loadgen_us']:.0f} µs")
PY
}

for n in $(seq 1 "$RUNS"); do
  echo "== $STORE run $n"
  run "$OUT/run$n"
done

python3 - "$OUT" "$STORE" "$CONCURRENCY" <<'PY'
import glob, json, statistics, sys
out, store, width = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.load(open(p)) for p in sorted(glob.glob(f"{out}/run*.json"))]
med = lambda k: statistics.median(r[k] for r in rows)
print(f"\n| store | drop width | `/healthz` req/s | placed orders/s | of ceiling | server µs/order | PostgreSQL µs/order "
      "| load generator µs/order | total µs/order | cores busy | `/healthz` server + load generator µs | runs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {store} | {width} | {med('ceiling'):,.0f} | {med('drop'):,.0f} | {statistics.median(r['drop'] / r['ceiling'] for r in rows):.1%} | "
      f"{med('server_us'):.0f} | {med('postgres_us'):.0f} | {med('loadgen_us'):.0f} | {med('total_us'):.0f} | "
      f"{med('cores_busy'):.2f} | {med('hello_server_us'):.0f} + {med('hello_loadgen_us'):.0f} | {len(rows)} |")
PY
