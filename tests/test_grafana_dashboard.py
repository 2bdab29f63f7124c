"""deploy/grafana/proxycheck.json: a dashboard Grafana 10/11 can import, and every metric and label it
queries is really served on ``/metrics`` by a real ``proxycheck run`` (loopback world).

The extraction is deliberately small: metric names are the identifiers matching
``proxycheck_[a-z_]+``; label names come from ``by (...)``, ``{label<op>...}`` matchers and
``label_values(metric, label)``. Histograms are queried by their series (``_bucket``, ``_count``),
which is what the exposition lists. ``job`` and ``instance`` are the target labels Prometheus adds
when it scrapes, so they are absent from ``/metrics`` by design.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxycheck.config import load_settings
from test_http_api import start_api
from test_daemon import stop

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "proxycheck.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
SCRAPE_LABELS = {"job", "instance"}
# A healthy proxy, an unhealthy one (a code) and one the Turnstile-like target bans.
NAMES = ["squid-anonymous", "refused", "squid-turnstile-banned"]
# Grafana's variables, as Grafana substitutes them before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": ".*", "$probe": ".*", "$phase": ".*"}

METRIC = re.compile(r"\bproxycheck_[a-z_]+")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
LABEL_VALUES = re.compile(r"label_values\(\s*[a-zA-Z_:][a-zA-Z0-9_:]*\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")


def metric_names(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def label_names(expr: str) -> set[str]:
    labels = {name.strip() for group in BY.findall(expr) for name in group.split(",") if name.strip()}
    labels |= {name for group in MATCHERS.findall(expr) for name in MATCHER_LABEL.findall(group)}
    return labels | set(LABEL_VALUES.findall(expr))


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def query_panels(board: dict) -> list[dict]:
    """Panels that draw something; rows are headings (a title and no query)."""
    return [p for p in board["panels"] if p["type"] != "row"]


def queries(board: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in query_panels(board) for t in p["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            found.append((f"variable ${var['name']}", query))
    return found


@pytest.mark.parametrize("expr, metrics, labels", [
    ('max by (state) (proxycheck_proxies{job=~"$job", state=~"healthy|unknown"})', {"proxycheck_proxies"}, {"state", "job"}),
    ("histogram_quantile(0.95, sum by (le, probe, phase) (rate(proxycheck_probe_phase_duration_seconds_bucket[5m])))",
     {"proxycheck_probe_phase_duration_seconds_bucket"}, {"le", "probe", "phase"}),
    ("time() - max(proxycheck_last_round_timestamp_seconds)", {"proxycheck_last_round_timestamp_seconds"}, set()),
    ("label_values(proxycheck_probe_phase_duration_seconds_count, phase)",
     {"proxycheck_probe_phase_duration_seconds_count"}, {"phase"}),
])
def test_the_extraction_finds_metrics_and_labels(expr, metrics, labels):
    assert (metric_names(expr), label_names(expr)) == (metrics, labels)


def test_dashboard_is_importable_json_with_a_prometheus_input():
    board = dashboard()
    assert board["__inputs"] == [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus",
                                  "pluginName": "Prometheus", "description": board["__inputs"][0]["description"]}]
    assert board["title"] == "proxycheck" and board["uid"] == "proxycheck"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in board["panels"]:
        assert p["title"].strip(), p
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
    for p in query_panels(board):
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
    for var in board["templating"]["list"]:
        assert var["datasource"] == DATASOURCE, var["name"]


def test_every_query_is_valid_promql():
    for where, expr in queries(dashboard()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        if expr.startswith("label_values("):  # Grafana's own function, not PromQL
            continue
        try:
            promql_parser.parse(expr)
        except ValueError as exc:
            pytest.fail(f"{where}: {exc}: {expr}")


def test_dashboard_has_the_issue_13_panels():
    """Fleet by state, unhealthy by code, bans by target, phase p50/p95, checks/s, dispatch lag,
    checker state, worker reports and the guard rail."""
    queried = set().union(*(metric_names(expr) for _, expr in queries(dashboard())))
    assert {"proxycheck_proxies", "proxycheck_unhealthy_proxies", "proxycheck_banned_proxies",
            "proxycheck_probe_phase_duration_seconds_bucket", "proxycheck_checks_total", "proxycheck_dispatch_lag_seconds",
            "proxycheck_checker_degraded", "proxycheck_worker_reports", "proxycheck_guard_rail_holding"} <= queried
    exprs = [expr for _, expr in queries(dashboard())]
    assert any("histogram_quantile(0.5," in e and "phase" in e for e in exprs)
    assert any("histogram_quantile(0.95," in e and "phase" in e for e in exprs)


# -- against a real daemon ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(world, tmp_path_factory):
    """``/metrics`` of a real daemon after its first round, with one worker report stored."""
    running = start_api(world, tmp_path_factory.mktemp("grafana"), NAMES)  # returns once every proxy is checked
    try:
        token = running.token_file.read_text().strip()
        report = httpx.post(running.base + "/report", headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=10,
                            json={"proxy": world.by_name("refused").url, "outcome": 25})  # stored; it is unhealthy already
        assert report.status_code == 200, report.text
        metrics = running.get("/metrics", token=token)
        assert metrics.status_code == 200, metrics.text
        yield running, metrics.text
    finally:
        code, err = stop(running.proc)
        running.notify.close()
    assert code == 0, err


def test_every_metric_and_label_the_dashboard_queries_is_served(served):
    _, text = served
    labels_of: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels_of.setdefault(sample.name, set()).update(sample.labels)
    for where, expr in queries(dashboard()):
        metrics = metric_names(expr)
        assert metrics, f"{where} queries no proxycheck metric: {expr}"
        for metric in metrics:
            assert metric in labels_of, f"{where}: {metric} is not in /metrics"
            for label in label_names(expr) - SCRAPE_LABELS:
                assert label in labels_of[metric], f"{where}: {metric} has no label {label!r} (has {sorted(labels_of[metric])})"


def test_every_configured_ban_target_is_exported(served):
    running, text = served
    banned = {s.labels["target"]: s.value for f in text_string_to_metric_families(text) if f.name == "proxycheck_banned_proxies"
              for s in f.samples}
    configured = [t.name for t in load_settings(str(running.config)).targets.ban_targets]
    assert len(configured) > 1
    assert banned == {name: (1.0 if name == "turnstile" else 0.0) for name in configured}
