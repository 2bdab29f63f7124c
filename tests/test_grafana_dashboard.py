"""deploy/grafana/proxycheck.json: a dashboard Grafana 10/11 can import, and every metric and label it
queries is really served on ``/metrics`` by a real ``proxycheck run`` (loopback world). Then a real
Prometheus (Debian's ``prometheus``) scrapes that daemon with the scrape config of docs/grafana.md, and every
query of the dashboard returns data from it.

The extraction is deliberately small: metric names are the identifiers matching
``proxycheck_[a-z_]+``; label names come from ``by (...)``, ``{label<op>...}`` matchers and
``label_values(metric, label)``. Histograms are queried by their series (``_bucket``, ``_count``),
which is what the exposition lists. ``job`` and ``instance`` are the target labels Prometheus adds
when it scrapes, so they are absent from ``/metrics`` by design.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemons import running_api, wait_until

from proxycheck.config import load_settings
from proxycheck.world import free_port

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "proxycheck.json"
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
    with running_api(world, tmp_path_factory.mktemp("grafana"), NAMES) as running:  # once every proxy is checked
        token = running.token_file.read_text().strip()
        report = httpx.post(running.base + "/report", headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=10,
                            json={"proxy": world.by_name("refused").url, "outcome": 25})  # stored; it is unhealthy already
        assert report.status_code == 200, report.text
        metrics = running.get("/metrics", token=token)
        assert metrics.status_code == 200, metrics.text
        yield running, metrics.text, token
    code, err = running.code, running.err
    assert code == 0, err


def test_every_metric_and_label_the_dashboard_queries_is_served(served):
    _, text, _ = served
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
    running, text, _ = served
    banned = {s.labels["target"]: s.value for f in text_string_to_metric_families(text) if f.name == "proxycheck_banned_proxies"
              for s in f.samples}
    configured = [t.name for t in load_settings(str(running.config)).targets.ban_targets]
    assert len(configured) > 1
    assert banned == {name: (1.0 if name == "turnstile" else 0.0) for name in configured}


def test_every_claim_is_timed_against_its_due_time(served):
    """``proxycheck_claim_delay_seconds`` (issue 21: dispatch lag per claim): the first round
    claimed every proxy once, each a little after it fell due, never minutes late."""
    _, text, _ = served
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "proxycheck_claim_delay_seconds"]
    count = next(s.value for s in family.samples if s.name.endswith("_count"))
    within = next(s.value for s in family.samples if s.name.endswith("_bucket") and s.labels["le"] == "60.0")
    assert count >= len(NAMES)
    assert within == count


# -- a real Prometheus scrapes it with docs/grafana.md's config ----------------------------------
def readme_scrape_config() -> str:
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "grafana.md").read_text(), re.S) if "scrape_configs:" in b]
    return block


@pytest.fixture(scope="module")
def prometheus(served, tmp_path_factory):
    """Prometheus scraping the daemon every second, with docs/grafana.md's config: its token file and address swapped in."""
    if shutil.which("prometheus") is None:
        if os.environ.get("PROXYCHECK_REQUIRE_WORLD") == "1":
            pytest.fail("PROXYCHECK_REQUIRE_WORLD=1 but Debian's `prometheus` is not installed (.ci/run installs it)", pytrace=False)
        pytest.skip("!!! prometheus not installed (apt-get install prometheus): the scrape test NOT RUN")
    running, _, _ = served
    home = tmp_path_factory.mktemp("prometheus")
    config = readme_scrape_config()
    for old, new in (("/etc/prometheus/proxycheck-token", str(running.token_file)), ("127.0.0.1:8181", f"127.0.0.1:{running.port}"),
                     ("scrape_interval: 30s", "scrape_interval: 1s")):
        assert old in config, old
        config = config.replace(old, new)
    (home / "prometheus.yml").write_text(config)
    checked = subprocess.run(["promtool", "check", "config", str(home / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    with (home / "log").open("w") as log:
        proc = subprocess.Popen(["prometheus", f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        def query(expr: str) -> list:
            answer = httpx.get(f"{base}/api/v1/query", params={"query": expr}, trust_env=False, timeout=10).json()
            assert answer["status"] == "success", (expr, answer)
            return answer["data"]["result"]

        def scraped() -> bool:
            try:
                up = query('count_over_time(up{job="proxycheck"}[1m])')
            except httpx.HTTPError:
                return False  # not listening yet
            return bool(up) and float(up[0]["value"][1]) >= 5  # a rate over 1m needs several scrapes

        wait_until(scraped, 60, "five scrapes of the daemon")
        assert query('up{job="proxycheck"}')[0]["value"][1] == "1", (home / "log").read_text()[-2000:]
        yield query
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_prometheus_scrapes_with_the_readme_config_and_every_query_has_data(prometheus):
    for where, expr in queries(dashboard()):
        if expr.startswith("label_values("):
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", expr).groups()
            assert any(label in series["metric"] for series in prometheus(metric)), f"{where}: no {label!r} on {metric}"
            continue
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert prometheus(expr), f"{where}: no data from Prometheus for {expr}"
    checks_per_second = prometheus('sum(rate(proxycheck_checks_total{job="proxycheck"}[1m]))')
    assert float(checks_per_second[0]["value"][1]) > 0  # the daemon kept checking while scraped
