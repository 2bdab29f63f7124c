"""/metrics: time per wire phase, by probe and phase, as a Prometheus histogram."""

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from proxycheck.metrics import DaemonMetrics
from proxycheck.proxy import parse_proxy_url
from proxycheck.result import CheckResult, ProbeOutcome


def test_phases_become_a_histogram_by_probe_and_phase():
    probes = (
        ProbeOutcome("tcp_connect", True, elapsed_ms=2.0, phases={"connect": 2.0}),
        ProbeOutcome("ssl", True, elapsed_ms=40.0, phases={"connect": 3.0, "proxy_handshake": 7.0, "tls": 20.0, "ttfb": 9.0,
                                                           "transfer": 1.0}),
        ProbeOutcome("ban", False, None, None, "not run", 0.0, skipped=True),
    )
    result = CheckResult(parse_proxy_url("http://203.0.113.7:3128"), True, None, None, "", None, probes,
                         datetime.now(UTC), 42.0)
    metrics = DaemonMetrics(lambda: None)
    metrics.observe(result)
    metrics.observe(result)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    samples = families["proxycheck_probe_phase_duration_seconds"].samples
    counts = {(s.labels["probe"], s.labels["phase"]): s.value for s in samples if s.name.endswith("_count")}
    assert counts == {("tcp_connect", "connect"): 2, ("ssl", "connect"): 2, ("ssl", "proxy_handshake"): 2,
                      ("ssl", "tls"): 2, ("ssl", "ttfb"): 2, ("ssl", "transfer"): 2}
    sums = {(s.labels["probe"], s.labels["phase"]): s.value for s in samples if s.name.endswith("_sum")}
    assert abs(sums[("ssl", "tls")] - 0.040) < 1e-9  # seconds, twice 20 ms
