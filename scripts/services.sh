#!/usr/bin/env bash
# Starts the local services the tests need if they are not running (DESIGN §6).
# Usage: scripts/services.sh postgres [redis]
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

start_postgres() {
  if pg_up; then return; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "PostgreSQL is not installed: apt-get install -y postgresql" >&2
    exit 1
  fi
  echo "starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do pg_up && return; sleep 1; done
  echo "PostgreSQL did not come up" >&2
  exit 1
}

start_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  # The scale-out tests also start private redis-servers, so the binary must be here.
  if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing Redis" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "Redis is not installed: apt-get install -y redis-server" >&2
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
    *) echo "unknown service: $service" >&2; exit 2 ;;
  esac
done
