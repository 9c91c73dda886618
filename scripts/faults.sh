#!/usr/bin/env bash
# Fault injection (issue 12): a drop over NODES `stampede serve` nodes on PostgreSQL and
# Redis (scripts/cluster.sh), driven by `stampede loadgen drop`, and one fault in the middle
# of it, once a quarter of the stock is sold:
#
#   kill9     the node admitting the waiting room (its lease holder) is killed with SIGKILL,
#             and started again FAULT_SECS later;
#   postgres  PostgreSQL is stopped (fast shutdown: every connection cut) and started again;
#   redis     Redis is shut down (nothing kept on disk) and started again;
#   kafka     the nodes publish to a Tansu broker, which is paused (SIGSTOP) and resumed
#             (SIGCONT): a restart would lose its in-memory topics (DESIGN §6).
#
# After each, with everything back: the nodes answer again; exactly the stock is sold and
# no unit oversold; every order the load generator was told of (201, a ticket placed, a
# replay) exists, and every order that exists was told to its buyer; every ticket answered
# 202 came to an order or a refusal (none lost, none left waiting); `stampede verify` is
# clean; every order has its `order.placed` event in the outbox; and, with Kafka, every
# outbox event is on its topic (tests/kafka/running_cluster.rs). One PASS/FAIL line per
# check and per scenario; the exit status is non-zero if any failed. A table of the
# figures goes to $OUT/report.md (RELIABILITY.md shows one).
#
# Each scenario gets a fresh database and Redis prefix. PostgreSQL, Redis and the broker are
# the suite's own (a private cluster, server and broker on ports of their own, in a
# temporary directory), so restarting them takes nothing away from other tests running on
# the machine; scripts/services.sh only makes sure PostgreSQL and Redis are installed.
# Everything the suite started is stopped on exit.
#
# Usage: scripts/faults.sh [SCENARIO…]     (default: kill9 postgres redis kafka)
#   env: NODES 3, STOCK 200, ATTEMPTS 2000, RATE 150 (attempts/s, open loop),
#        FAULT_SECS 3, POLL_MS 250 (a waiting ticket's polls), OUT bench-out/faults-<ts>
# Uses the dev build with --features kafka, built as `cargo test --features kafka` builds it
# (CI has it already).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cluster.sh

ALL_SCENARIOS=(kill9 postgres redis kafka)
NODES=${NODES:-3}
STOCK=${STOCK:-200}
ATTEMPTS=${ATTEMPTS:-2000}
BUYERS=${BUYERS:-$ATTEMPTS}
# Fast enough to keep the writers busy, so the waiting room engages (with one slot per
# writer queue, below), slow enough that the fault comes while the stock lasts.
RATE=${RATE:-150}
# Enough for every attempt to be in flight at once (following its ticket): none is dropped.
CONCURRENCY=${CONCURRENCY:-$ATTEMPTS}
FAULT_SECS=${FAULT_SECS:-3}
# How often the load generator polls a waiting ticket, as a waiting-room page would. At 250
# ms (what the server's own live stream of a ticket does) the room collapses after a fault
# on this machine: see RELIABILITY.md.
POLL_MS=${POLL_MS:-250}
PG_PORT=${FAULTS_PG_PORT:-15439}
REDIS_PORT=${FAULTS_REDIS_PORT:-16379}
KAFKA_PORT=${FAULTS_KAFKA_PORT:-19392}
FIRST_NODE_PORT=${FAULTS_NODE_PORT:-18801}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
OUT=${OUT:-bench-out/faults-$(date -u +%Y%m%dT%H%M%SZ)}
BIN="$CARGO_TARGET_DIR/debug/stampede"
PORTS=()
for ((i = 0; i < NODES; i++)); do PORTS+=($((FIRST_NODE_PORT + i))); done

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${ALL_SCENARIOS[@]}")
for s in "${scenarios[@]}"; do
  case " ${ALL_SCENARIOS[*]} " in *" $s "*) ;; *) echo "unknown scenario $s (${ALL_SCENARIOS[*]})" >&2; exit 2 ;; esac
done
[ "$NODES" -ge 2 ] || { echo "NODES must be at least 2: one is killed" >&2; exit 2; }

ulimit -n 65536 2>/dev/null || true
# The same build as `cargo test --features kafka`: the binary and the topic check.
cargo test --workspace --features kafka --test kafka --no-run --quiet
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
scripts/services.sh postgres redis >/dev/null
TANSU=${TANSU_BIN:-${STAMPEDE_TEST_TANSU_BIN:-}}
if [[ " ${scenarios[*]} " == *" kafka "* ]] && [ -z "$TANSU" ]; then
  TANSU=$(scripts/services.sh tansu-bin)
fi

# --- the suite's own PostgreSQL, Redis and broker -----------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stampede-faults.XXXXXX")
chmod 755 "$WORK"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

# PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user.
# From /, which any user may enter.
as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else (cd / && "$@"); fi
}
pg_ctl() { as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" "$@"; }
pg_init() {
  mkdir -p "$WORK/pg"
  [ "$(id -u)" != 0 ] || chown postgres "$WORK/pg"
  as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" --auth=trust --username=postgres -E UTF8 \
    --no-sync >"$OUT/initdb.log" 2>&1
}
pg_start() {
  pg_ctl -l "$WORK/pg/postgres.log" -w -t 30 start \
    -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
}
pg_stop() { pg_ctl -m fast -w -t 30 stop >/dev/null; }
pg_running() { pg_ctl status >/dev/null 2>&1; }

redis_ping() { redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; }
# DESIGN §6's command, on the suite's port, keeping nothing on disk.
redis_start() {
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$WORK" --pidfile "$WORK/redis.pid" --logfile "$OUT/redis.log"
  wait_for 10 redis_ping
}
redis_stop() {
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  wait_for 10 eval '! redis_ping'
}

BROKER_PID=""
broker_up() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; }
broker_start() {
  "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
    >>"$1" 2>&1 &
  BROKER_PID=$!
  wait_for 20 broker_up
}
broker_stop() {
  [ -n "$BROKER_PID" ] || return 0
  kill -CONT "$BROKER_PID" 2>/dev/null || true
  kill "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}

# wait_for SECONDS COMMAND…: until COMMAND succeeds; fails after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

suite_cleanup() {
  pg_ctl -m immediate -w stop >/dev/null 2>&1 || true
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  cp "$WORK/pg/postgres.log" "$OUT/postgres.log" 2>/dev/null || true
  rm -rf "$WORK"
}
trap suite_cleanup EXIT

pg_init
pg_start
redis_start

# --- checks --------------------------------------------------------------------------------
# In a scenario (a subshell): each check prints one PASS/FAIL line and is kept for the report.
# pass NAME DETAIL, fail NAME DETAIL, check OK NAME DETAIL (PASS when OK is 1).
FAILED=0
pass() { echo "  PASS $SCENARIO: $1: $2"; printf 'PASS\t%s\t%s\n' "$1" "$2" >>"$DIR/checks.tsv"; }
fail() { echo "  FAIL $SCENARIO: $1: $2"; printf 'FAIL\t%s\t%s\n' "$1" "$2" >>"$DIR/checks.tsv"; FAILED=1; }
check() { if [ "$1" = 1 ]; then pass "$2" "$3"; else fail "$2" "$3"; fi; }
sql() { psql -X -qAt -v ON_ERROR_STOP=1 "$STAMPEDE_DATABASE_URL" -c "$1"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# All nodes ready and the drop's product readable through each: the cluster serves again.
cluster_serves() {
  local port product
  product=$(sql "SELECT min(id) FROM products" 2>/dev/null) || return 1
  for port in "${PORTS[@]}"; do
    curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" || return 1
    curl -sf -o /dev/null "http://127.0.0.1:$port/api/v1/products/$product" || return 1
  done
}
# sold_or_over N: N orders placed, or the drop is over.
sold_or_over() {
  ! kill -0 "$LOADGEN_PID" 2>/dev/null ||
    [ "$(sql 'SELECT count(*) FROM orders' 2>/dev/null || echo 0)" -ge "$1" ]
}
relay_caught_up() {
  local head=$1 done
  done=$(sql "SELECT COALESCE(MAX(last_event_id), 0) FROM relay_progress" 2>/dev/null) || return 1
  [ "$done" -ge "$head" ]
}

# The node that last took the waiting room's lease (each logs it), else the second one.
room_holder() {
  local port at best="" best_at=""
  for port in "${PORTS[@]}"; do
    at=$(sed 's/\x1b\[[0-9;]*m//g' "$DIR/node-$port.log" |
      grep "admitting the waiting room's tickets" | tail -n 1 | cut -d' ' -f1)
    if [ -n "$at" ] && [[ "$at" > "$best_at" ]]; then best=$port best_at=$at; fi
  done
  echo "${best:-${PORTS[1]}}"
}

# --- faults: inject_SCENARIO, then restore_SCENARIO (which waits until recovered) ---------
VICTIM="" KILLED_AT=""
inject_kill9() {
  VICTIM=$(room_holder)
  echo "  killing the node on port $VICTIM"
  KILLED_AT=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
  node_kill "$VICTIM" KILL
}
restore_kill9() { node_start "$VICTIM"; wait_for 60 cluster_serves; }
# Seconds from the kill until another node logged that it took the room over, if one did.
room_takeover_secs() {
  local port at first=""
  for port in "${PORTS[@]}"; do
    at=$(sed 's/\x1b\[[0-9;]*m//g' "$DIR/node-$port.log" | grep "admitting the waiting room's tickets" |
      awk -v after="$KILLED_AT" '$1 > after {print $1; exit}')
    if [ -n "$at" ] && { [ -z "$first" ] || [[ "$at" < "$first" ]]; }; then first=$at; fi
  done
  [ -n "$first" ] || return 0
  python3 -c "import datetime as d, sys; p = lambda t: d.datetime.fromisoformat(t.rstrip('Z')); print(f'{(p(sys.argv[2]) - p(sys.argv[1])).total_seconds():.1f}')" "$KILLED_AT" "$first"
}
inject_postgres() { pg_stop; }
restore_postgres() { pg_start; wait_for 60 cluster_serves; }
inject_redis() { redis_stop; }
restore_redis() { redis_start; wait_for 60 cluster_serves; }
inject_kafka() { kill -STOP "$BROKER_PID"; }
restore_kafka() {
  local head
  kill -CONT "$BROKER_PID"
  head=$(sql "SELECT COALESCE(MAX(id), 0) FROM outbox")
  wait_for 60 cluster_serves && wait_for 60 relay_caught_up "$head"
}
describe() {
  case $1 in
    kill9) echo "\`kill -9\` of the node admitting the waiting room (1 of $NODES), restarted ${FAULT_SECS} s later" ;;
    postgres) echo "PostgreSQL stopped (fast shutdown), started ${FAULT_SECS} s later" ;;
    redis) echo "Redis shut down (nothing on disk), started ${FAULT_SECS} s later" ;;
    kafka) echo "Kafka broker paused (SIGSTOP), resumed (SIGCONT) ${FAULT_SECS} s later" ;;
  esac
}

# --- one scenario --------------------------------------------------------------------------
scenario_cleanup() {
  [ -z "${LOADGEN_PID:-}" ] || kill "$LOADGEN_PID" 2>/dev/null || true
  cluster_stop
  # Whatever happened, the next scenario finds every service up.
  pg_running || pg_start || true
  redis_ping || redis_start || true
  broker_stop
}

# In a subshell of its own: its settings, nodes and traps end with it.
run_scenario() {
  SCENARIO=$1
  DIR="$OUT/$SCENARIO"
  OUT=$DIR
  mkdir -p "$DIR"
  : >"$DIR/checks.tsv"
  local db="faults_$SCENARIO"
  LOADGEN_PID=""
  trap scenario_cleanup EXIT
  STAMPEDE_DATABASE_URL=$(cluster_create_db "$PG_ADMIN_URL" "$db")
  export STAMPEDE_DATABASE_URL STAMPEDE_REDIS_URL=$REDIS_URL
  export STAMPEDE_REDIS_PREFIX="faults-$SCENARIO-$$:"
  export STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
  # The waiting room's lease holder says when it takes over: kill9 kills that node.
  export RUST_LOG="warn,stampede::app::placement::waiting_room=info"
  # One slot per writer queue: the waiting room takes over as soon as a writer is busy, so
  # the drop hands out tickets and the faults meet them.
  export STAMPEDE_PLACEMENT_QUEUE_DEPTH=${STAMPEDE_PLACEMENT_QUEUE_DEPTH:-1}
  unset STAMPEDE_KAFKA_BROKERS
  if [ "$SCENARIO" = kafka ]; then
    broker_start "$DIR/broker.log"
    export STAMPEDE_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
  fi
  cluster_prepare "$BUYERS"
  cluster_start "${PORTS[@]}"
  local token targets started
  token=$(cluster_admin_token "${PORTS[0]}")
  mapfile -t targets < <(cluster_targets "${PORTS[@]}")
  started=$(now)
  STAMPEDE_ADMIN_TOKEN=$token "$BIN" loadgen drop "${targets[@]}" --tokens "$DIR/tokens.txt" \
    --stock "$STOCK" --attempts "$ATTEMPTS" --rate "$RATE" --concurrency "$CONCURRENCY" \
    --poll-ms "$POLL_MS" --out "$DIR/drop" >"$DIR/loadgen.log" 2>&1 &
  LOADGEN_PID=$!

  # Mid-drop: once a quarter of the stock is sold.
  local mid=$((STOCK / 4 > 0 ? STOCK / 4 : 1)) injected restored down_secs recovery_secs
  wait_for 60 sold_or_over "$mid" || true
  if ! kill -0 "$LOADGEN_PID" 2>/dev/null; then
    fail "mid-drop" "the drop was over before $mid units were sold"
  fi
  injected=$(now)
  "inject_$SCENARIO"
  sleep "$FAULT_SECS"
  restored=$(now)
  down_secs=$(python3 -c "print(f'{$restored - $injected:.1f}')")
  if "restore_$SCENARIO"; then
    recovery_secs=$(since "$restored")
    local takeover=""
    [ "$SCENARIO" != kill9 ] || takeover=$(room_takeover_secs)
    pass "serves again" "${recovery_secs} s after the fault ended (down ${down_secs} s)${takeover:+; the room taken over ${takeover} s after the kill}"
  else
    recovery_secs=null
    fail "serves again" "not within 60 s of the fault's end"
  fi
  local lg_rc=0
  wait "$LOADGEN_PID" || lg_rc=$?
  LOADGEN_PID=""
  check "$([ "$lg_rc" = 0 ] && echo 1)" "loadgen verdict" "$(grep -E '^(correct|INCORRECT)' "$DIR/loadgen.log" | head -c 300 || echo "exit $lg_rc")"
  sed -n 's/^followed: /  /p' "$DIR/loadgen.log"

  check_sales
  check_orders
  check_tickets
  local verify_rc=0
  "$BIN" verify >"$DIR/verify.txt" 2>&1 || verify_rc=$?
  check "$([ "$verify_rc" = 0 ] && echo 1)" "verify clean" "exit $verify_rc ($DIR/verify.txt)"
  check_outbox
  [ "$SCENARIO" != kafka ] || check_topics

  write_result "$started" "$down_secs" "$recovery_secs"
  cluster_stop
  cluster_drop_db "$PG_ADMIN_URL" "$db"
  [ "$FAILED" = 0 ]
}

check_sales() {
  local row stock on_hand held live
  row=$(sql "SELECT s.on_hand, s.held, COALESCE((SELECT sum(i.quantity) FROM order_items i
             JOIN orders o ON o.id = i.order_id WHERE i.product_id = p.id
             AND o.status NOT IN ('cancelled', 'refunded')), 0)
             FROM products p JOIN stock s ON s.product_id = p.id ORDER BY p.id LIMIT 1")
  IFS='|' read -r on_hand held live <<<"$row"
  stock=$STOCK
  check "$([ "$live" = "$stock" ] && echo 1)" "sold = stock" "$live units in live orders, stock $stock"
  check "$([ "$held" -le "$on_hand" ] && [ $((held + stock - on_hand)) = "$live" ] && [ "$live" -le "$stock" ] && echo 1)" \
    "none oversold" "on_hand $on_hand, held $held for $live units sold"
}

check_orders() {
  local missing untold
  if [ ! -f "$DIR/drop/orders.txt" ]; then
    fail "acknowledged orders exist" "the load generator wrote no orders.txt"
    return
  fi
  sql "CREATE TABLE acknowledged (id BIGINT PRIMARY KEY)" >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 "$STAMPEDE_DATABASE_URL" -c "\\copy acknowledged FROM '$DIR/drop/orders.txt'"
  missing=$(sql "SELECT count(*) FROM acknowledged a WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = a.id)")
  untold=$(sql "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM acknowledged a WHERE a.id = o.id)")
  check "$([ "$missing" = 0 ] && echo 1)" "acknowledged orders exist" \
    "$(wc -l <"$DIR/drop/orders.txt") in orders.txt, $missing missing"
  sql "SELECT idempotency_key FROM orders o WHERE NOT EXISTS (SELECT 1 FROM acknowledged a WHERE a.id = o.id)" \
    >"$DIR/untold-keys.txt"
  check "$([ "$untold" = 0 ] && echo 1)" "every order acknowledged" \
    "$untold orders no buyer was told of$(untold_told "$DIR/untold-keys.txt" "$DIR/drop/tickets.json")"
}

# What the tickets of the orders in KEYS_FILE (idempotency keys) told their buyers, if any.
untold_told() {
  python3 - "$1" "$2" <<'PY'
import collections, json, sys
keys = set(open(sys.argv[1]).read().split())
try:
    tickets = json.load(open(sys.argv[2]))
except (OSError, ValueError):
    tickets = []
last = {}
for t in tickets:
    last[t["idempotency_key"]] = f'{t["end"]} {t["code"] or ""}'.strip()
told = collections.Counter(last[k] for k in keys if k in last)
if told:
    print("; their tickets said: " + ", ".join(f"{what} {n}" for what, n in told.most_common()), end="")
PY
}

check_tickets() {
  local verdict
  if [ ! -f "$DIR/drop/tickets.json" ]; then
    fail "tickets resolved" "the load generator wrote no tickets.json"
    return
  fi
  verdict=$(python3 - "$DIR/drop/tickets.json" <<'PY'
import collections, json, sys
tickets = json.load(open(sys.argv[1]))
ends = collections.Counter(t["end"] for t in tickets)
bad = sum(ends[e] for e in ("lost", "unresolved", "refused"))
placed_without_order = sum(1 for t in tickets if t["end"] in ("placed", "replayed") and t["order_id"] is None)
summary = ", ".join(f"{e} {n}" for e, n in sorted(ends.items())) or "none issued"
note = "" if tickets else " (the waiting room did not engage in this run)"
print(1 if bad == 0 and placed_without_order == 0 else 0, f"{len(tickets)} tickets: {summary}{note}")
PY
)
  check "${verdict%% *}" "tickets resolved" "every 202 to an order or a refusal: ${verdict#* }"
}

check_outbox() {
  local missing
  missing=$(sql "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM outbox e
                 WHERE e.aggregate_type = 'order' AND e.aggregate_id = o.id AND e.event_type = 'order.placed')")
  check "$([ "$missing" = 0 ] && echo 1)" "outbox complete" "$missing orders without their order.placed event"
}

check_topics() {
  local rc=0
  STAMPEDE_FAULTS_DATABASE_URL=$STAMPEDE_DATABASE_URL STAMPEDE_FAULTS_KAFKA_BROKERS=$STAMPEDE_KAFKA_BROKERS \
    cargo test --workspace --features kafka --test kafka --quiet -- --ignored --exact --nocapture \
    running_cluster::every_outbox_event_of_the_faults_cluster_is_on_its_topic >"$DIR/topics.txt" 2>&1 || rc=$?
  check "$([ "$rc" = 0 ] && echo 1)" "topics complete" "$(grep -m1 -E '^topics:|panicked|timed out' "$DIR/topics.txt" || echo "exit $rc, see $DIR/topics.txt")"
}

write_result() {
  python3 - "$DIR" "$SCENARIO" "$(describe "$SCENARIO")" "$FAILED" "$1" "$(now)" "$2" "$3" "$STOCK" <<'PY'
import json, sys
d, scenario, fault, failed, started, ended, down, recovery, stock = sys.argv[1:]
try:
    s = json.load(open(f"{d}/drop/summary.json"))
except (OSError, ValueError):
    s = {}
checks = [dict(zip(("result", "check", "detail"), line.rstrip("\n").split("\t", 2))) for line in open(f"{d}/checks.tsv")]
f = s.get("followed", {})
json.dump({
    "scenario": scenario, "fault": fault, "passed": failed == "0", "checks": checks,
    "wall_s": round(float(ended) - float(started), 1), "down_s": float(down),
    "recovery_s": None if recovery == "null" else float(recovery), "stock": int(stock),
    "attempts": s.get("attempts"), "sold": s.get("sold"), "rejected_by_code": s.get("rejected_by_code"),
    "errors": s.get("errors"), "orders_acknowledged": f.get("orders_acknowledged"),
    "orders_replayed_on_retry": f.get("orders_replayed_on_retry"), "tickets": f.get("tickets"),
    "tickets_by_end": f.get("tickets_by_end"), "retries": f.get("retries"),
    "retries_by_reason": f.get("retries_by_reason"), "latency_ms": s.get("latency_ms"),
}, open(f"{d}/result.json", "w"), indent=2)
PY
}

report() {
  python3 - "$OUT" "$@" <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
rows = ["| Fault | When | Checks | Result | Command |", "|---|---|---|---|---|"]
for name in names:
    try:
        r = json.load(open(os.path.join(out, name, "result.json")))
    except (OSError, ValueError):
        rows.append(f"| {name} | – | did not run to the end | **FAIL** | `scripts/faults.sh {name}` |")
        continue
    ends = ", ".join(f"{n} {e}" for e, n in sorted((r["tickets_by_end"] or {}).items())) or "none"
    reasons = ", ".join(f"{n} {k}" for k, n in sorted((r["retries_by_reason"] or {}).items())) or "none"
    failed = [f"{c['check']} ({c['detail']})" for c in r["checks"] if c["result"] == "FAIL"]
    serving = [c["detail"] for c in r["checks"] if c["check"] == "serves again"]
    recovery = ("serving again " + serving[0]) if serving else "did not recover"
    result = ("PASS" if r["passed"] else "**FAIL**: " + "; ".join(failed)) + (
        f". Sold {r['sold']} of {r['stock']} ({r['attempts']} attempts); "
        f"{r['orders_acknowledged']} orders acknowledged, {r['orders_replayed_on_retry']} of them by a replay; "
        f"{r['tickets']} tickets: {ends}; {r['retries']} retries: {reasons}; "
        f"{recovery}; {r['wall_s']} s in all")
    checks = ", ".join(c["check"] if c["result"] == "PASS" else f"~~{c['check']}~~" for c in r["checks"])
    rows.append(f"| {r['fault']} | mid-drop (at {r['stock'] // 4} of {r['stock']} sold) | {checks} | {result} | `scripts/faults.sh {name}` |")
text = "\n".join(rows) + "\n"
open(os.path.join(out, "report.md"), "w").write(text)
print(text)
PY
}

# --- the suite -------------------------------------------------------------------------------
suite_started=$SECONDS
failed=()
for name in "${scenarios[@]}"; do
  echo "== $name: $(describe "$name")"
  # Not as an `if` condition, where bash would ignore set -e inside the scenario.
  set +e
  (set -e; run_scenario "$name")
  rc=$?
  set -e
  if [ "$rc" = 0 ]; then
    echo "PASS $name"
  else
    echo "FAIL $name"
    failed+=("$name")
  fi
done
echo
report "${scenarios[@]}"
echo "faults: ${#scenarios[@]} scenarios in $((SECONDS - suite_started)) s; logs in $OUT"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAIL: ${failed[*]}"
  exit 1
fi
echo "PASS: all ${#scenarios[@]} scenarios"
