#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document (issue 12) with Schemathesis, from PyPI.
#
# One `stampede serve` on a fresh SQLite database in a temp dir, with the rate and abuse
# limits off (every request comes from one address and one account: the fuzzer would only
# measure the limiter), and a little data (scripts/fuzz/seed.py) so that generated requests get past the
# id and role checks. Then one Schemathesis run signed in as each role — admin, a partner's
# seller, a buyer — and one without a token, each for a time budget, with the checks
#   not_a_server_error          no 5xx: any is a server bug
#   status_code_conformance     every status is documented for its operation
#   content_type_conformance    and its content type
#   response_schema_conformance and its body matches the documented schema
#   error_body                  every 4xx and 5xx is the documented ErrorBody
#                               (scripts/fuzz/hooks.py, which also signs the runs in)
# Prints the requests made per run (the server's own count, from /metrics, beside the test
# cases Schemathesis reports) and exits non-zero on any failure, on a server panic, or when
# fewer requests than the bound were made. The server is stopped on exit; on failure the
# work directory (server log, each run's output) is kept and named.
#
# Usage: scripts/fuzz.sh          the CI bound: 40 s a run, at least 2,000 requests in all
#        scripts/fuzz.sh --long   180 s a run, at least 20,000 requests in all
# Environment: FUZZ_SECONDS_PER_RUN and FUZZ_MIN_REQUESTS override the bound; FUZZ_SEED
# replays a run's generation (each run prints its seed).
#
# The binary is the dev build `cargo test --all-targets --features kafka` makes (scripts/test
# runs this right after the tests); it is built only when missing or older than the sources.
#
# What a fresh Debian machine goes through: like the Tansu broker (scripts/services.sh), a
# venv of our own under ~/.cache/stampede-tools with Schemathesis pinned, after installing
# python3-venv with apt-get (as root) when `python3 -m venv` cannot work.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

SCHEMATHESIS_VERSION="4.32.5"
TOOLS_DIR="$HOME/.cache/stampede-tools"
# Named after the pinned version, so changing the pin installs afresh beside the old one.
ST_VENV="$TOOLS_DIR/schemathesis-$SCHEMATHESIS_VERSION"
CHECKS="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,error_body"
ROLES=(admin seller buyer anonymous)

seconds="${FUZZ_SECONDS_PER_RUN:-40}"
min_requests="${FUZZ_MIN_REQUESTS:-2000}"
case "${1:-}" in
  "") ;;
  --long)
    seconds="${FUZZ_SECONDS_PER_RUN:-180}"
    min_requests="${FUZZ_MIN_REQUESTS:-20000}"
    ;;
  *) echo "usage: scripts/fuzz.sh [--long]" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
# No __pycache__ beside the hooks in the work tree.
export PYTHONDONTWRITEBYTECODE=1
BIN="$CARGO_TARGET_DIR/debug/stampede"

as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

install_schemathesis() {
  if "$ST_VENV/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then return; fi
  if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    if as_root_with_apt; then
      echo "installing python3 python3-venv" >&2
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    else
      echo "Python 3 with venv is missing: apt-get install -y python3 python3-venv (as root)" >&2
      exit 1
    fi
  fi
  echo "installing Schemathesis (PyPI schemathesis==$SCHEMATHESIS_VERSION) in $ST_VENV" >&2
  # A half-made venv from an interrupted run would otherwise pass the check above forever.
  rm -rf "$ST_VENV"
  mkdir -p "$TOOLS_DIR"
  python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION"
  "$ST_VENV/bin/st" --version >/dev/null
}

build_if_stale() {
  if [ -x "$BIN" ] && [ -z "$(find src crates Cargo.toml Cargo.lock -newer "$BIN" -print -quit)" ]; then
    return
  fi
  echo "building $BIN (cargo build --features kafka)" >&2
  cargo build --quiet --features kafka --bin stampede
}

# What the server has answered so far, by its own count (the scrapes themselves left out).
requests_served() {
  curl -sf "$BASE/metrics" | awk '/^http_requests_total\{/ && !/route="\/metrics"/ { n += $NF } END { print n + 0 }'
}

install_schemathesis
build_if_stale

WORK="$(mktemp -d "${TMPDIR:-/tmp}/stampede-fuzz.XXXXXX")"
server_pid=""
ok=0
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$ok" = 1 ]; then rm -rf "$WORK"; else echo "fuzz: kept $WORK (server.log, run-*.txt)" >&2; fi
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
# The server sees none of the caller's STAMPEDE_* settings nor a stampede.toml (it runs in
# $WORK): an embedded node with the simulated gateway, whatever this shell has configured.
mapfile -t unset_args < <(env | sed -n 's/^\(STAMPEDE_[A-Z0-9_]*\)=.*/-u\n\1/p')
server_env=(env "${unset_args[@]}"
  STAMPEDE_DATABASE_URL="sqlite://$WORK/fuzz.db"
  STAMPEDE_HTTP_ADDR="127.0.0.1:$PORT"
  STAMPEDE_RATE_LIMIT_IP_PER_SEC=0
  STAMPEDE_RATE_LIMIT_USER_PER_SEC=0
  # The abuse limits on one address too (their highest values; unknown to a build without
  # them, which ignores them): the fuzzer's failed logins would otherwise lock the runs'
  # own logins out, and its sign-ups run out after 20.
  STAMPEDE_LOGIN_FAILURES_MAX=1000000
  STAMPEDE_SIGNUPS_PER_IP_MAX=1000000
  RUST_LOG=warn)
ADMIN_EMAIL="admin@fuzz.invalid"
ADMIN_PASSWORD="fuzz-admin-$RANDOM$RANDOM"
(
  cd "$WORK"
  "${server_env[@]}" "$BIN" migrate >/dev/null
  "${server_env[@]}" STAMPEDE_NEW_USER_PASSWORD="$ADMIN_PASSWORD" \
    "$BIN" admin create-user --email "$ADMIN_EMAIL" --role admin >/dev/null
)
(cd "$WORK" && exec "${server_env[@]}" "$BIN" serve >"$WORK/server.log" 2>&1) &
server_pid=$!
for _ in $(seq 1 100); do
  curl -sf "$BASE/readyz" >/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
curl -sf "$BASE/readyz" >/dev/null || { echo "fuzz: the server did not come up:" >&2; tail -n 20 "$WORK/server.log" >&2; exit 1; }
"$ST_VENV/bin/python" scripts/fuzz/seed.py "$BASE" "$ADMIN_EMAIL" "$ADMIN_PASSWORD" "$WORK/roles.json"

role_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])' "$WORK/roles.json" "$1" "$2"; }

failed=()
total=0
summary=()
started_all=$SECONDS
for role in "${ROLES[@]}"; do
  args=(run "$BASE/api/openapi.json" --checks "$CHECKS" --max-time "$seconds"
    # One worker: Schemathesis' threads trip a CPython 3.11 bug (ast.parse from two
    # threads: "AST constructor recursion depth mismatch"), and two cores are shared with
    # the server anyway.
    --workers 1 --no-color --generation-database none)
  [ -n "${FUZZ_SEED:-}" ] && args+=(--seed "$FUZZ_SEED")
  email="" password=""
  if [ "$role" != anonymous ]; then
    email="$(role_field "$role" email)"
    password="$(role_field "$role" password)"
    # The live streams never end for a signed-in caller; anonymous runs still reach them
    # (401).
    args+=(--exclude-path-regex '/events$')
  fi
  before="$(requests_served)"
  run_started=$SECONDS
  echo "fuzz: $role, ${seconds} s" >&2
  status=0
  (cd "$WORK" && SCHEMATHESIS_HOOKS="$REPO/scripts/fuzz/hooks.py" FUZZ_BASE_URL="$BASE" \
    FUZZ_EMAIL="$email" FUZZ_PASSWORD="$password" "$ST_VENV/bin/st" "${args[@]}") \
    >"$WORK/run-$role.txt" 2>&1 || status=$?
  served=$(($(requests_served) - before))
  total=$((total + served))
  cases="$(sed -n 's/^ *\([0-9]*\) generated.*/\1/p' "$WORK/run-$role.txt" | tail -n 1)"
  seed="$(sed -n 's/^Seed: //p' "$WORK/run-$role.txt")"
  summary+=("$(printf '%-10s %8s %10s %5s s  seed %s' "$role" "${cases:-?}" "$served" $((SECONDS - run_started)) "${seed:-?}")")
  # Schemathesis exits 0 on an empty suite (a budget spent before the first case).
  if [ "${cases:-0}" = 0 ]; then
    echo "fuzz: the $role run made no test case" >&2
    status=1
  fi
  if [ "$status" != 0 ]; then
    failed+=("$role")
    # Failures and the summary; the full output stays in the work directory.
    report="$(sed -n '/^=* \(FAILURES\|ERRORS\) =*$/,$p' "$WORK/run-$role.txt")"
    [ -n "$report" ] || report="$(tail -n 40 "$WORK/run-$role.txt")"
    echo "$report" >&2
  fi
done

echo
printf '%-10s %8s %10s %7s\n' run "cases" requests time
printf '%s\n' "${summary[@]}"
echo "fuzz: $total requests in $((SECONDS - started_all)) s of fuzzing, $SECONDS s in all" \
  "(bound: at least $min_requests requests)"

passed=$((${#ROLES[@]} - ${#failed[@]}))
if grep -q "panicked" "$WORK/server.log"; then
  echo "fuzz: the server panicked:" >&2
  grep -m 5 -A 3 "panicked" "$WORK/server.log" >&2
  failed+=(server-panic)
fi
if [ "$total" -lt "$min_requests" ]; then
  echo "fuzz: only $total requests, fewer than $min_requests" >&2
  failed+=(too-few-requests)
fi
# The plain closing line CI reads: runs passed, and runs or checks of the whole that failed.
echo "fuzz: $passed passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
ok=1
