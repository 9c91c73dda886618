#!/usr/bin/env bash
# The operations page in a real browser (issue 13). First checks the page's latency
# arithmetic under Node's test runner (scripts/browser/quantile.test.mjs). Then starts a
# `stampede serve` on SQLite in a temporary directory on a free port, with an admin, a buyer
# and BUYERS provisioned buyers, and runs scripts/browser/admin.mjs, which drives Debian's
# Chromium with playwright-core: the admin signs in on /admin and watches a drop of STOCK
# units sell out to the buyers (some pay, some take coupons), and a buyer is refused.
# Screenshots go to $ARTIFACTS_DIR (default bench-out/browser), the server's log beside
# them. Exits non-zero on any failure, saying which check failed.
#
# Installs what it needs when missing, and only then: Debian's chromium (apt-get, as
# root), and the npm packages of scripts/browser/package-lock.json (npm ci). Uses the dev
# build with --features kafka, as `cargo test --features kafka` builds it (CI has it
# already). About 30 s once built.
#
# Usage: scripts/browser-test.sh      env: STOCK 20, BUYERS 60, ARTIFACTS_DIR, CHROMIUM
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
STOCK=${STOCK:-20}
BUYERS=${BUYERS:-60}
ARTIFACTS_DIR=${ARTIFACTS_DIR:-bench-out/browser}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
# Short enough that the page must renew its token while the test watches it.
ACCESS_TOKEN_TTL_SECS=8

# --- what the test needs ------------------------------------------------------------------
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "browser-test: $CHROMIUM is missing; install Debian's chromium (as root: apt-get install -y chromium)" >&2
    exit 1
  fi
  echo "browser-test: installing Debian's chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser-test: node and npm are missing (Node.js 20 or newer)" >&2
  exit 1
fi
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || {
  echo "browser-test: playwright-core needs Node.js 20 or newer; this is $(node --version)" >&2
  exit 1
}
# npm ci only when the lock file changed since the last install (a stamp beside the modules).
(
  cd scripts/browser
  if ! cmp -s package-lock.json node_modules/.stampede-installed-lock 2>/dev/null; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.stampede-installed-lock
  fi
)
# The page's arithmetic first (latency quantiles from histogram deltas), without a browser.
node --test --test-reporter=spec scripts/browser/quantile.test.mjs
cargo build --bin stampede --features kafka --quiet
BIN="$CARGO_TARGET_DIR/debug/stampede"

# --- a server of its own --------------------------------------------------------------------
mkdir -p "$ARTIFACTS_DIR"
ARTIFACTS_DIR=$(cd "$ARTIFACTS_DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stampede-browser.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -CONT "$SERVER_PID" 2>/dev/null || true # the browser test pauses it a moment
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The embedded mode only, whatever the caller's environment points at.
unset STAMPEDE_REDIS_URL STAMPEDE_KAFKA_BROKERS
export STAMPEDE_CONFIG="$WORK/stampede.toml" # absent: defaults and the variables below
export STAMPEDE_DATABASE_URL="sqlite://$WORK/stampede.db"
export STAMPEDE_HTTP_ADDR="127.0.0.1:$PORT"
export STAMPEDE_ACCESS_TOKEN_TTL_SECS=$ACCESS_TOKEN_TTL_SECS
export RUST_LOG=${RUST_LOG:-warn}
export ADMIN_EMAIL=admin@browser-test.invalid ADMIN_PASSWORD=admin-pass-1
export BUYER_EMAIL=buyer@browser-test.invalid BUYER_PASSWORD=buyer-pass-1

"$BIN" migrate >/dev/null
STAMPEDE_NEW_USER_PASSWORD=$ADMIN_PASSWORD "$BIN" admin create-user --email "$ADMIN_EMAIL" --role admin >/dev/null
STAMPEDE_NEW_USER_PASSWORD=$BUYER_PASSWORD "$BIN" admin create-user --email "$BUYER_EMAIL" --role buyer >/dev/null
"$BIN" admin provision-buyers --count "$BUYERS" --out "$WORK/tokens.txt" >/dev/null

"$BIN" serve >"$ARTIFACTS_DIR/server.log" 2>&1 &
SERVER_PID=$!
deadline=$((SECONDS + 30))
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz"; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "browser-test: the server did not become ready; its log ends:" >&2
    tail -n 20 "$ARTIFACTS_DIR/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

echo "browser-test: Chromium against http://127.0.0.1:$PORT/admin ($BUYERS buyers, $STOCK units)"
STAMPEDE_URL="http://127.0.0.1:$PORT" BUYER_TOKENS="$WORK/tokens.txt" STOCK=$STOCK \
  ARTIFACTS_DIR=$ARTIFACTS_DIR CHROMIUM=$CHROMIUM SERVER_PID=$SERVER_PID node scripts/browser/admin.mjs
echo "browser-test: screenshot $ARTIFACTS_DIR/admin.png"
