#!/usr/bin/env python3
"""Checks that every metric a dashboard panel or an alert rule names is one the server exports.

    check_metrics.py METRICS_FILE [--prometheus URL] SOURCE...

METRICS_FILE is a scrape of a running server's /metrics. Each SOURCE is a Prometheus rule
file (`groups:`, YAML) or a Grafana dashboard (JSON). Every PromQL expression in them is
parsed with a real PromQL parser (PyPI `promql-parser`, the Rust parser of GreptimeDB), and
each vector selector's metric name must be a series name the scrape declares:

- a counter `x` is exported as `x_total`; a histogram `x` as `x_bucket`, `x_sum`, `x_count`;
  a gauge `x` as `x`. Names are derived from the `# TYPE` lines by these rules, not by
  stripping suffixes off the queried name, so `x_count` is accepted only when `x` is a
  histogram (or a summary), never because some `x` exists;
- `up` is Prometheus' own series per scraped target, and no other name is taken on trust.

Labels are checked too where the scrape shows series of the metric: a matcher's label, and
the labels of `by (…)`, `without (…)`, `on (…)` and `ignoring (…)`, must be labels of the
series in that sub-expression, or `job`/`instance` (Prometheus adds them), or
`exported_job`/`exported_instance` for a metric whose own `job`/`instance` label Prometheus
renames at scrape time. A metric declared but without series yet gets its name checked and
its labels listed as not checked.

Grafana's variables are replaced before parsing: `$__rate_interval`, `$__interval` and
`$__range` by a duration, any other `$var`/`${var}` (inside a label matcher's value) by `.*`.
A `label_values(metric, label)` variable query is checked as a selector of that metric.

With `--prometheus URL` (a Prometheus that has scraped that server for a few seconds), every
expression is also evaluated there: Prometheus must accept it (a vector matching that cannot
work fails only then), and a dashboard query must return something when each of its
selectors alone does (a `/` or `and` whose sides share no labels returns nothing). Alert
expressions may well return nothing: their thresholds are not crossed.

Prints what it checked, and each problem with the panel or rule it comes from; exits 1 when
there is any.
"""

import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import promql_parser as pq
import yaml

TARGET_LABELS = {"job", "instance"}
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
DERIVED = {
    "counter": ["_total"],
    "gauge": [""],
    "histogram": ["_bucket", "_sum", "_count"],
    "gaugehistogram": ["_bucket", "_gsum", "_gcount"],
    "summary": ["", "_sum", "_count"],
    "info": ["_info"],
    "stateset": [""],
    "unknown": [""],
}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def read_exposition(text):
    """(series name → set of label names seen, or None when declared without series)."""
    exported = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) == 4:
                for suffix in DERIVED.get(parts[3], [""]):
                    exported.setdefault(parts[2] + suffix, None)
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if m:
                labels = set(LABEL.findall(m.group(3) or ""))
                if exported.get(m.group(1)) is None:
                    exported[m.group(1)] = set()
                exported[m.group(1)] |= labels
    return exported


def grafana_to_promql(expr):
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?", ".*", expr)


def expressions(path):
    """(where, PromQL) of every expression in a rule file or a dashboard."""
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        dash = json.loads(text)
        for panel in dash.get("panels", []):
            for t in panel.get("targets", []):
                if t.get("expr"):
                    yield (f"{path}: panel '{panel.get('title')}' {t.get('refId')}",
                           grafana_to_promql(t["expr"]))
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            query = var.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)\s*", query)
            if m:
                # The label asked for must be a label of the series, like a `by`.
                yield (f"{path}: variable '{var.get('name')}'",
                       f"count by ({m.group(2)}) ({grafana_to_promql(m.group(1))})")
            elif query:
                yield (f"{path}: variable '{var.get('name')}'", grafana_to_promql(query))
    else:
        for group in yaml.safe_load(text).get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("alert") or rule.get("record")
                yield f"{path}: rule {name}", str(rule["expr"])


class Checker:
    def __init__(self, exported):
        self.exported = exported
        self.problems = []
        self.unchecked_labels = set()
        self.names = set()
        self.quiet_panels = []

    def series_labels(self, name):
        """Labels a query may use on `name`, or None when no series shows them yet."""
        if name in PROMETHEUS_SERIES:
            return set(PROMETHEUS_SERIES[name])
        own = self.exported.get(name)
        if own is None:
            return None
        renamed = {f"exported_{label}" for label in own & TARGET_LABELS}
        return (own - TARGET_LABELS) | renamed | TARGET_LABELS

    def selectors(self, node):
        found = []
        pq.walk(node, lambda n: found.append(n) if isinstance(n, pq.VectorSelector) else None)
        return found

    def available_labels(self, node):
        """Labels the series under `node` carry, or None if some are not known yet."""
        labels = set()
        for sel in self.selectors(node):
            own = self.series_labels(self.name_of(sel) or "")
            if own is None:
                return None
            labels |= own
        # label_replace(v, "dst", …) adds a label of its own.
        def added(n):
            if isinstance(n, pq.Call) and n.func.name in ("label_replace", "label_join"):
                labels.add(n.args[1].val)
        pq.walk(node, added)
        return labels

    @staticmethod
    def name_of(sel):
        if sel.name:
            return sel.name
        for m in sel.matchers.matchers:
            if m.name == "__name__" and m.op == pq.MatchOp.Equal:
                return m.value
        return None

    def check(self, where, expr):
        try:
            ast = pq.parse(expr)
        except Exception as e:  # the parser raises its own error type
            self.problems.append(f"{where}: does not parse: {e}\n    {expr}")
            return

        def visit(node):
            if isinstance(node, pq.VectorSelector):
                self.check_selector(where, node)
            elif isinstance(node, pq.AggregateExpr) and node.modifier is not None:
                self.check_grouping(where, node.expr, node.modifier.labels,
                                    f"{node.op} {node.modifier}")
            elif isinstance(node, pq.BinaryExpr) and node.modifier is not None \
                    and node.modifier.matching is not None:
                labels = list(node.modifier.matching.labels)
                self.check_grouping(where, node.lhs, labels, str(node.modifier))
                self.check_grouping(where, node.rhs, labels, str(node.modifier))
        pq.walk(ast, visit)

    def check_selector(self, where, sel):
        name = self.name_of(sel)
        if name is None:
            self.problems.append(f"{where}: a selector without a metric name cannot be "
                                 f"checked: {sel}")
            return
        self.names.add(name)
        if name not in self.exported and name not in PROMETHEUS_SERIES:
            self.problems.append(f"{where}: {name} is not exported by the server")
            return
        labels = self.series_labels(name)
        if labels is None:
            self.unchecked_labels.add(name)
            return
        for m in sel.matchers.matchers:
            if m.name != "__name__" and m.name not in labels:
                self.problems.append(f"{where}: {name} has no label '{m.name}' "
                                     f"(it has {', '.join(sorted(labels))})")

    def check_grouping(self, where, node, labels, clause):
        if not labels:
            return
        available = self.available_labels(node)
        if available is None:
            return
        for label in labels:
            if label not in available:
                self.problems.append(f"{where}: '{clause}' names label '{label}', which "
                                     f"the series under it do not have "
                                     f"({', '.join(sorted(available))})")


def instant_query(url, expr):
    """(result list, None) or (None, Prometheus' error)."""
    query = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as e:  # 400/422 carry Prometheus' error as JSON
        body = json.load(e)
    if body.get("status") != "success":
        return None, body.get("error", "no answer")
    data = body["data"]
    return (data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]],
            None)


def evaluate(checker, url, where, expr, must_answer):
    """Problems of `expr` evaluated on the Prometheus at `url`; True if it returned data."""
    result, error = instant_query(url, expr)
    if error is not None:
        checker.problems.append(f"{where}: Prometheus refuses it: {error}\n    {expr}")
        return False
    if result or not must_answer:
        return bool(result)
    try:
        selectors = checker.selectors(pq.parse(expr))
    except Exception:  # reported by check() already
        return False
    if selectors and all(instant_query(url, str(sel))[0] for sel in selectors):
        checker.problems.append(f"{where}: returns nothing, though each of its selectors "
                                f"has series\n    {expr}")
    else:
        checker.quiet_panels.append(where)
    return False


def main(argv):
    args = argv[1:]
    url = None
    if len(args) >= 2 and args[1] == "--prometheus":
        url = args[2].rstrip("/")
        del args[1:3]
    if len(args) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    exported = read_exposition(Path(args[0]).read_text(encoding="utf-8"))
    checker = Checker(exported)
    count = answered = 0
    for source in args[1:]:
        for where, expr in expressions(source):
            count += 1
            checker.check(where, expr)
            if url:
                answered += evaluate(checker, url, where, expr, source.endswith(".json"))
    if url:
        print(f"check_metrics: evaluated on {url}: {answered} of {count} returned data")
        for where in checker.quiet_panels:
            print(f"check_metrics: nothing yet (a selector has no series): {where}")
    with_series = sorted(n for n in checker.names if n not in checker.unchecked_labels)
    print(f"check_metrics: {count} expressions, {len(checker.names)} metric names "
          f"({len(with_series)} with series whose labels were checked)")
    if checker.unchecked_labels:
        print("check_metrics: declared without series yet, labels not checked: "
              + ", ".join(sorted(checker.unchecked_labels)))
    if count == 0:
        print("check_metrics: no expression found", file=sys.stderr)
        return 1
    for problem in checker.problems:
        print(f"check_metrics: {problem}", file=sys.stderr)
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
