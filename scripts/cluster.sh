# A cluster of `stampede serve` nodes on one PostgreSQL database, for the scripts that run
# one (scripts/three-nodes.sh, scripts/faults.sh). Sourced, not run: it only defines
# functions and leaves set -e, traps and cleanup to its caller.
#
# The caller sets BIN (the stampede binary) and OUT (a directory for logs and tokens), and
# exports the nodes' configuration (STAMPEDE_DATABASE_URL, STAMPEDE_REDIS_URL, …) before
# cluster_prepare and node_start. Nodes run on 127.0.0.1 at the ports given; their logs
# are $OUT/node-PORT.log, appended to across restarts.

# Pids of the running nodes, by port.
declare -A CLUSTER_PIDS=()
CLUSTER_ADMIN_EMAIL=admin@cluster.invalid
CLUSTER_ADMIN_PASSWORD=cluster-admin-1

# cluster_create_db ADMIN_URL NAME: a fresh, empty database NAME next to ADMIN_URL's;
# prints its URL.
cluster_create_db() {
  PGOPTIONS='-c client_min_messages=warning' psql -q "$1" -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" -c "CREATE DATABASE $2" >/dev/null
  echo "${1%/*}/$2"
}

# cluster_drop_db ADMIN_URL NAME
cluster_drop_db() {
  psql -q "$1" -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" >/dev/null 2>&1 || true
}

# cluster_prepare BUYERS: the schema, an admin, and BUYERS buyers whose tokens go to
# $OUT/tokens.txt.
cluster_prepare() {
  local RUST_LOG=${RUST_LOG:-warn}
  export RUST_LOG
  # Every attempt comes from 127.0.0.1: the per-IP limit would measure itself.
  export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0
  "$BIN" migrate >/dev/null
  STAMPEDE_NEW_USER_PASSWORD=$CLUSTER_ADMIN_PASSWORD "$BIN" admin create-user \
    --email "$CLUSTER_ADMIN_EMAIL" --role admin >/dev/null
  "$BIN" admin provision-buyers --count "$1" --out "$OUT/tokens.txt" >/dev/null
}

# node_start PORT: starts a node in the background (see node_ready to wait for it).
node_start() {
  STAMPEDE_HTTP_ADDR=127.0.0.1:$1 RUST_LOG=${RUST_LOG:-warn} "$BIN" serve >>"$OUT/node-$1.log" 2>&1 &
  CLUSTER_PIDS[$1]=$!
}

# node_ready PORT [SECONDS]: waits until the node answers /readyz (default 20 s).
node_ready() {
  local deadline=$((SECONDS + ${2:-20}))
  until curl -sf -o /dev/null "http://127.0.0.1:$1/readyz"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "node $1 not ready after ${2:-20} s; its log ends:" >&2
      tail -n 20 "$OUT/node-$1.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

# node_kill PORT [SIGNAL]: signals the node (default TERM) and waits for it to exit.
node_kill() {
  local pid=${CLUSTER_PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "CLUSTER_PIDS[$1]"
}

# cluster_start PORT…: starts a node on each port and waits until all are ready.
cluster_start() {
  local port
  for port in "$@"; do node_start "$port"; done
  for port in "$@"; do node_ready "$port"; done
}

# cluster_stop: stops every node still running.
cluster_stop() {
  local port
  for port in "${!CLUSTER_PIDS[@]}"; do node_kill "$port"; done
}

# cluster_targets PORT…: the load generator's --target flags for these nodes.
cluster_targets() {
  local port
  for port in "$@"; do printf -- '--target\nhttp://127.0.0.1:%s\n' "$port"; done
}

# cluster_admin_token PORT: the admin's access token, from the node at PORT.
cluster_admin_token() {
  curl -sf "http://127.0.0.1:$1/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$CLUSTER_ADMIN_EMAIL\",\"password\":\"$CLUSTER_ADMIN_PASSWORD\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
