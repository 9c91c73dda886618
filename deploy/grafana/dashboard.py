#!/usr/bin/env python3
"""Writes deploy/grafana/stampede.json, the Grafana dashboard of a Stampede cluster.

The dashboard is generated rather than edited by hand: forty panels of Grafana's JSON model
are easier to keep consistent (one datasource, one layout rule, one way to write a rate)
from a list of what each shows. `scripts/check-deploy.sh` runs this with `--check` and fails
when the committed JSON is not what it writes, then checks every metric the queries name
against a running server's /metrics.

    python3 deploy/grafana/dashboard.py           # rewrite stampede.json
    python3 deploy/grafana/dashboard.py --check   # exit 1 if stampede.json differs

Conventions of the queries (as in deploy/prometheus/alerts.yml):
- readings every node exports alike (stock levels from the database, the waiting room's
  line, the verify job's drift, open dead letters) are read with `max`, never summed;
- counters are summed over nodes after `rate`;
- `job_runs_total` names its job `job_name` (`job` is Prometheus' scrape job).

Grafana 10 and 11 read it (schemaVersion 39). The datasource is the `datasource` variable,
which defaults to the Prometheus of uid `prometheus` (deploy/grafana/provisioning) and, on
a manual import, to whichever Prometheus datasource is the default.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("stampede.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
ORDER_ROUTE = "/api/v1/orders"


def target(expr, legend="", ref="A", instant=False, table=False):
    t = {"datasource": DS, "editorMode": "code", "expr": expr, "legendFormat": legend,
         "refId": ref, "range": not instant, "instant": instant}
    if table:
        t["format"] = "table"
    return t


def targets(*queries, **kwargs):
    """(expr, legend) pairs → targets A, B, C…"""
    return [target(expr, legend, chr(ord("A") + i), **kwargs)
            for i, (expr, legend) in enumerate(queries)]


def thresholds(*steps, base="green"):
    """(value, colour) pairs above a base colour."""
    return {"mode": "absolute",
            "steps": [{"color": base, "value": None}]
            + [{"color": colour, "value": value} for value, colour in steps]}


def timeseries(title, queries, unit="short", description="", line_at=None, stack=False,
               min_zero=True):
    defaults = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10,
                                         "showPoints": "never", "spanNulls": False}}
    if min_zero:
        defaults["min"] = 0
    if stack:
        defaults["custom"]["stacking"] = {"mode": "normal", "group": "A"}
        defaults["custom"]["fillOpacity"] = 40
    if line_at is not None:
        defaults["thresholds"] = thresholds((line_at, "red"))
        defaults["custom"]["thresholdsStyle"] = {"mode": "line+area"}
    return {"type": "timeseries", "title": title, "description": description,
            "datasource": DS, "targets": targets(*queries),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def stat(title, expr, unit="short", description="", steps=(), base="green"):
    defaults = {"unit": unit, "thresholds": thresholds(*steps, base=base)}
    return {"type": "stat", "title": title, "description": description, "datasource": DS,
            "targets": [target(expr, title)],
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                          "values": False},
                        "colorMode": "background", "graphMode": "area",
                        "textMode": "value", "justifyMode": "auto",
                        "orientation": "auto"}}


def up_down_timeline(title, queries, description=""):
    mappings = [{"type": "value", "options": {
        "0": {"text": "down", "color": "red", "index": 0},
        "1": {"text": "up", "color": "green", "index": 1}}}]
    return {"type": "state-timeline", "title": title, "description": description,
            "datasource": DS, "targets": targets(*queries),
            "fieldConfig": {"defaults": {"mappings": mappings,
                                         "thresholds": thresholds((1, "green")),
                                         "color": {"mode": "thresholds"}},
                            "overrides": []},
            "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                        "legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": False},
                        "tooltip": {"mode": "single", "sort": "none"}}}


def stock_table():
    """Each product's levels now: one instant query per level, joined on product_id."""
    levels = [("on hand", "stock_on_hand"), ("held", "stock_held"),
              ("available", "stock_available"), ("sold", "stock_sold")]
    queries = [target(f'max by (product_id) ({metric}{{product_id=~"$product"}})', name,
                      chr(ord("A") + i), instant=True, table=True)
               for i, (name, metric) in enumerate(levels)]
    rename = {f"Value #{chr(ord('A') + i)}": name for i, (name, _) in enumerate(levels)}
    return {"type": "table", "title": "Stock now, by product",
            "description": "on_hand = held + available; sold counts committed units. Products "
                           "on sale or moved recently.",
            "datasource": DS, "targets": queries,
            "transformations": [{"id": "merge", "options": {}},
                                {"id": "organize", "options": {
                                    "excludeByName": {"Time": True},
                                    "renameByName": {"product_id": "product", **rename}}}],
            "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
            "options": {"showHeader": True, "sortBy": [{"displayName": "available",
                                                        "desc": False}]}}


def funnel_totals():
    queries = [(f"sum(increase({m}[$__range]))", name) for name, m in [
        ("attempted", "orders_attempted_total"), ("placed", "orders_placed_total"),
        ("paid", "orders_paid_total"), ("confirmed", "orders_confirmed_total")]]
    return {"type": "bargauge", "title": "Order funnel over the time range",
            "description": "Attempts reaching placement → placed (stock held) → paid → "
                           "confirmed by the buyer or automatically.",
            "datasource": DS, "targets": targets(*queries, instant=True),
            "fieldConfig": {"defaults": {"unit": "short", "min": 0,
                                         "thresholds": thresholds()},
                            "overrides": []},
            "options": {"orientation": "horizontal", "displayMode": "gradient",
                        "showUnfilled": True, "valueMode": "color",
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                          "values": False}}}


def quantiles(metric, matcher, qs=(0.5, 0.95, 0.99)):
    return [(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{matcher}[{RATE}])))",
             f"p{round(q * 100)}") for q in qs]


def per_second(metric, by=None, legend=None, matcher=""):
    if by:
        return (f"sum by ({by}) (rate({metric}{matcher}[{RATE}]))",
                legend or "{{" + by.split(",")[0].strip() + "}}")
    return (f"sum(rate({metric}{matcher}[{RATE}]))", legend or metric)


def consumer_lag(by="group"):
    return f"sum by ({by}) (max by (group, topic, partition) (consumer_lag))"


ERROR_RATIO = ('sum(rate(http_requests_total{status=~"5.."}[' + RATE + ']))'
               ' / sum(rate(http_requests_total[' + RATE + ']))')

# (row title, [(panel, width)]); each row is laid out left to right, 8 units high.
ROWS = [
    ("Overview", [
        (stat("Nodes alive", "max(nodes_alive)",
              description="Nodes with a heartbeat in the last 10 s.",
              steps=[(1, "green")], base="red"), 4),
        (stat("Orders placed / s", f"sum(rate(orders_placed_total[{RATE}]))", unit="ops"), 4),
        (stat("5xx ratio", ERROR_RATIO, unit="percentunit",
              steps=[(0.01, "orange"), (0.05, "red")]), 4),
        (stat("Waiting room", "max(waiting_room_depth)",
              steps=[(1, "orange"), (10000, "red")]), 4),
        (stat("Ledger drift", "max(ledger_drift)", steps=[(1, "red")],
              description="Differences the last scheduled verify found; 0 when every "
                          "ledger balances."), 4),
        (stat("Dead letters open", "max(dead_letters_open)", steps=[(1, "orange")]), 4),
    ]),
    ("Stock", [
        (timeseries("Available, by product",
                    [('max by (product_id) (stock_available{product_id=~"$product"})',
                      "product {{product_id}}")],
                    description="Units that can still be ordered."), 12),
        (stock_table(), 12),
        (timeseries("On hand, by product",
                    [('max by (product_id) (stock_on_hand{product_id=~"$product"})',
                      "product {{product_id}}")]), 8),
        (timeseries("Held, by product",
                    [('max by (product_id) (stock_held{product_id=~"$product"})',
                      "product {{product_id}}")],
                    description="Units in unpaid orders, released at their payment "
                                "deadline."), 8),
        (timeseries("Sold, by product",
                    [('max by (product_id) (stock_sold{product_id=~"$product"})',
                      "product {{product_id}}")]), 8),
    ]),
    ("Order funnel", [
        (timeseries("Funnel, per second",
                    [per_second("orders_attempted_total", legend="attempted"),
                     per_second("orders_placed_total", legend="placed"),
                     per_second("orders_paid_total", legend="paid"),
                     per_second("orders_confirmed_total", legend="confirmed")],
                    unit="ops"), 12),
        (funnel_totals(), 12),
        (timeseries("Refused, by reason",
                    [per_second("orders_rejected_total", by="reason")], unit="ops",
                    stack=True), 8),
        (timeseries("Cancelled and refunded, by reason",
                    [per_second("orders_cancelled_total", by="reason")], unit="ops",
                    stack=True), 8),
        (timeseries("Payments, by outcome",
                    [per_second("payments_total", by="reason")], unit="ops",
                    stack=True), 8),
    ]),
    ("Latency", [
        (timeseries("POST /orders latency: p50, p95, p99",
                    quantiles("http_request_duration_seconds",
                              '{method="POST", route="' + ORDER_ROUTE + '"}'),
                    unit="s",
                    description="Placing an order, as the nodes answered it (a 202 from the "
                                "waiting room included)."), 12),
        (timeseries("p99 latency, 10 slowest routes",
                    [("topk(10, histogram_quantile(0.99, sum by (le, method, route) "
                      f"(rate(http_request_duration_seconds_bucket[{RATE}]))))",
                      "{{method}} {{route}}")], unit="s"), 12),
        (timeseries("Placement transactions: p99 duration",
                    quantiles("placement_batch_seconds", "", qs=(0.5, 0.99)), unit="s",
                    description="One group commit of the batching writer; the first place "
                                "to look when orders slow down."), 12),
        (timeseries("Placement transactions: orders per batch",
                    [(f"sum(rate(placement_batch_size_sum[{RATE}])) / "
                      f"sum(rate(placement_batch_size_count[{RATE}]))", "mean"),
                     (f"histogram_quantile(0.99, sum by (le) "
                      f"(rate(placement_batch_size_bucket[{RATE}])))", "p99")]), 12),
    ]),
    ("HTTP errors", [
        (timeseries("HTTP responses, by status",
                    [per_second("http_requests_total", by="status")], unit="reqps",
                    stack=True), 8),
        (timeseries("5xx ratio", [(ERROR_RATIO, "5xx / all")], unit="percentunit",
                    line_at=0.05,
                    description="Alert StampedeHttpErrorRatioHigh above 5 % (seed 002)."),
         8),
        (timeseries("4xx and 5xx, by route and status",
                    [(f'sum by (route, status) (rate(http_requests_total{{status=~"[45].."}}'
                      f"[{RATE}]))", "{{status}} {{route}}")], unit="reqps"), 8),
        (timeseries("Refused by limits",
                    [per_second("rate_limited_total", by="reason",
                                legend="rate limit {{reason}}"),
                     per_second("abuse_refused_total", by="reason",
                                legend="abuse limit {{reason}}"),
                     per_second("placement_queue_full_total", legend="writers and room full")],
                    unit="reqps"), 12),
        (timeseries("Sold-out refusals without a database write",
                    [per_second("sold_out_fast_rejects_total", legend="node's sold-out gate"),
                     per_second("gate_sold_out_total", legend="Redis availability gate"),
                     per_second("gate_passes_total", legend="passed the Redis gate")],
                    unit="ops"), 12),
    ]),
    ("Waiting room", [
        (timeseries("Waiting room depth", [("max(waiting_room_depth)", "waiting")],
                    line_at=10000,
                    description="Order attempts waiting for the placement writers (202 + "
                                "ticket). Alert above 10,000."), 12),
        (timeseries("Entering, admitted and refused, per second",
                    [per_second("waiting_room_entered_total", legend="entered"),
                     per_second("waiting_room_admitted_total", legend="admitted"),
                     per_second("waiting_room_full_total", legend="refused: room full")],
                    unit="ops"), 12),
    ]),
    ("Coupons and points", [
        (timeseries("Coupons issued and refused, per second",
                    [per_second("coupons_issued_total", legend="issued"),
                     per_second("coupons_refused_total", by="reason",
                                legend="refused: {{reason}}")], unit="ops"), 12),
        (stat("Coupons issued over the time range",
              "sum(increase(coupons_issued_total[$__range]))"), 4),
        (timeseries("Coupon gate", [
            per_second("coupon_gate_passes_total", legend="passed to the database"),
            per_second("coupon_gate_refused_total", by="reason", legend="refused: {{reason}}")],
            unit="ops"), 8),
        (timeseries("Points, per second", [
            per_second(f"points_{kind}_total", legend=kind)
            for kind in ("earned", "granted", "held", "spent", "released", "refunded",
                         "expired", "deducted")], description="In points (1 point = 1 won)."),
         24),
    ]),
    ("Events: outbox, Kafka relay, consumers", [
        (timeseries("Outbox and relay backlog (events)",
                    [("max by (instance) (outbox_lag_events)",
                      "not dispatched on {{instance}}"),
                     ("max(relay_lag_events)", "not relayed to Kafka")],
                    line_at=10000), 8),
        (timeseries("Relay lag, commit → broker ack",
                    quantiles("relay_lag_seconds", "", qs=(0.5, 0.99)), unit="s",
                    line_at=1, description="Alert StampedeRelayLagHigh when p99 > 1 s."), 8),
        (timeseries("Consumer lag (messages), by group", [(consumer_lag(), "{{group}}")],
                    line_at=10000), 8),
        (timeseries("Relay published and failed, per second",
                    [per_second("relay_published_total", legend="published"),
                     per_second("relay_failures_total", legend="failed rounds")],
                    unit="ops"), 12),
        (timeseries("Consumers, by handler",
                    [per_second("consumer_processed_total", by="handler",
                                legend="processed {{handler}}"),
                     per_second("consumer_failed_total", by="handler",
                                legend="failed {{handler}}")], unit="ops"), 12),
    ]),
    ("Dead letters and ledgers", [
        (timeseries("Dead letters open", [("max(dead_letters_open)", "open")], line_at=1),
         8),
        (timeseries("Dead letters, per minute", [
            (f"sum by (handler) (increase(consumer_dead_lettered_total[{RATE}]))",
             "dead-lettered by {{handler}}"),
            (f"sum(increase(dead_letters_replayed_total[{RATE}]))", "replayed"),
            (f"sum(increase(dead_letters_discarded_total[{RATE}]))", "discarded"),
            (f"sum(increase(dead_letters_retry_failed_total[{RATE}]))", "retry failed")]),
         8),
        (timeseries("Ledger drift", [("max(ledger_drift)", "differences")], line_at=1,
                    description="Set by the hourly verify job; alert above 0."), 8),
    ]),
    ("Health", [
        (up_down_timeline("Database, Redis, broker, per node",
                          [("max by (instance, dependency) (dependency_up)",
                            "{{dependency}} from {{instance}}")],
                          description="Absent for a dependency a node is not configured "
                                      "with."), 12),
        (up_down_timeline("Nodes scraped", [('up{job="stampede"}', "{{instance}}")],
                          description="Prometheus' own reading of each node."), 12),
        (timeseries("Nodes alive", [("max(nodes_alive)", "with a heartbeat (≤ 10 s)"),
                                    ('count(up{job="stampede"} == 1)', "answering scrapes")]),
         8),
        (timeseries("Job runs, by job and outcome",
                    [(f"sum by (job_name, outcome) (increase(job_runs_total[{RATE}]))",
                      "{{job_name}} {{outcome}}")],
                    description="Lease-held jobs; `settlement` is the daily settlement."), 8),
        (timeseries("Payment gateway", [
            ("max(payment_gateway_breaker_state)", "breaker (0 closed, 1 half-open, 2 open)"),
            (f"histogram_quantile(0.99, sum by (le) "
             f"(rate(payment_gateway_latency_seconds_bucket[{RATE}])))", "p99 call (s)")]),
         8),
    ]),
]

PANEL_HEIGHT = 8


def layout():
    """Rows and their panels with ids and grid positions, top to bottom."""
    panels, next_id, y = [], 1, 0
    for title, row in ROWS:
        panels.append({"type": "row", "title": title, "collapsed": False, "id": next_id,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id, y, x = next_id + 1, y + 1, 0
        for panel, width in row:
            if x + width > 24:
                x, y = 0, y + PANEL_HEIGHT
            panels.append({**panel, "id": next_id,
                           "gridPos": {"h": PANEL_HEIGHT, "w": width, "x": x, "y": y}})
            next_id, x = next_id + 1, x + width
        y += PANEL_HEIGHT
    return panels


def dashboard():
    return {
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "description": "A Stampede cluster during a drop: stock, the order funnel, latency, "
                       "errors, the waiting room, coupons, points, events and health.",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": layout(),
        "refresh": "5s",
        "schemaVersion": 39,
        "tags": ["stampede"],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {"text": "Prometheus", "value": "prometheus"},
             "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
             "regex": ""},
            {"name": "product", "label": "Product", "type": "query", "datasource": DS,
             "definition": "label_values(stock_on_hand, product_id)",
             # A classic query string, which every Grafana since 7 reads (and migrates).
             "query": "label_values(stock_on_hand, product_id)",
             "current": {"text": ["All"], "value": ["$__all"]},
             "hide": 0, "includeAll": True, "allValue": ".*", "multi": True, "options": [],
             "refresh": 2, "regex": "", "sort": 3},
        ]},
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m"]},
        "timezone": "",
        "title": "Stampede",
        "uid": "stampede",
        "version": 1,
    }


def render():
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv):
    text = render()
    if argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is not what {Path(__file__).name} writes: "
                  f"run python3 deploy/grafana/dashboard.py", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print("usage: dashboard.py [--check]", file=sys.stderr)
        return 2
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
