#!/usr/bin/env bash
# Starts the local services the tests need if they are not running (DESIGN §6), installing
# them first where they are missing (as root, with apt-get), so that the README's test
# command works on a fresh Debian machine.
#
# Usage: scripts/services.sh postgres [redis]   install if needed, start, make a login work
#        scripts/services.sh pg-url             print the URL the tests reach PostgreSQL at
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
set -euo pipefail

PG_PORT=5432
DEFAULT_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
PG_TEST_ROLE="stampede_test"
PG_URL_FILE="${XDG_STATE_HOME:-$HOME/.local/state}/stampede/test-pg-url"

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

for service in "$@"; do
  case "$service" in
    postgres) start_postgres ;;
    redis) start_redis ;;
    pg-url) pg_url ;;
    *) echo "unknown service: $service" >&2; exit 2 ;;
  esac
done
