# What the benchmark scripts share; sourced, not run. A script sets, before sourcing:
#   OUT (its output directory), DB (the PostgreSQL database it may drop and create);
# and may set BIN (a stampede binary to measure) and PG_ADMIN_URL.
# After sourcing: BIN is set (this tree's release build unless given), OUT is absolute,
# PostgreSQL runs, and on exit the script's server ($server_pid) is stopped and its
# database dropped.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
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
bench_cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap bench_cleanup EXIT

# A fresh, empty database of store $1 (sqlite: the file $OUT/$2); exports its URL.
fresh_db() {
  case "$1" in
    sqlite) rm -f "$OUT/$2"*; export STAMPEDE_DATABASE_URL="sqlite://$OUT/$2" ;;
    postgres)
      psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" \
        >/dev/null 2>&1
      export STAMPEDE_DATABASE_URL="${PG_ADMIN_URL%/*}/$DB" ;;
  esac
}

# Starts `stampede serve` on port $1 (log: $2), unthrottled, and waits until it is ready.
start_server() {
  export STAMPEDE_HTTP_ADDR=127.0.0.1:$1
  # Every request comes from 127.0.0.1: the rate limits would measure themselves.
  export STAMPEDE_RATE_LIMIT_IP_PER_SEC=0 STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
  "$BIN" serve > "$2" 2>&1 & server_pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.1; done
  echo "the server on port $1 did not get ready: $2" >&2; exit 1
}

stop_server() {
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

# Prints field $2 of the JSON answer to a POST of body $3 to URL $1 (bearer token $4, if given).
post_json() {
  local auth=()
  [ -n "${4:-}" ] && auth=(-H "authorization: Bearer $4")
  curl -s "$1" -H 'content-type: application/json' "${auth[@]}" -d "$3" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}
