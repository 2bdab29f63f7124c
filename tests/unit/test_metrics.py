"""/metrics: time per wire phase, by probe and phase, as a Prometheus histogram."""

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from proxycheck.metrics import DaemonMetrics
from proxycheck.proxy import parse_proxy_url
from proxycheck.result import CheckResult, ProbeOutcome
from proxycheck.store.reports import FeedbackSummary
from proxycheck.store.status import StatusSummary


def test_phases_become_a_histogram_by_probe_and_phase():
    probes = (
        ProbeOutcome("tcp_connect", True, elapsed_ms=2.0, phases={"connect": 2.0}),
        ProbeOutcome("ssl", True, elapsed_ms=40.0, phases={"connect": 3.0, "proxy_handshake": 7.0, "tls": 20.0, "ttfb": 9.0,
                                                           "transfer": 1.0}),
        ProbeOutcome("ban", False, None, None, "not run", 0.0, skipped=True),
        # An earlier run's result carried forward (not due by its schedule): observed when it ran, not again.
        ProbeOutcome("images", True, elapsed_ms=300.0, phases={"connect": 2.0, "ttfb": 290.0}, carried=True, age_s=60.0),
    )
    result = CheckResult(parse_proxy_url("http://203.0.113.7:3128"), True, None, None, "", None, probes,
                         datetime.now(UTC), 42.0)
    metrics = DaemonMetrics(lambda: None)
    metrics.observe(result)
    metrics.observe(result)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    probe_counts = {s.labels["probe"]: s.value for s in families["proxycheck_probe_duration_seconds"].samples
                    if s.name.endswith("_count")}
    assert probe_counts == {"tcp_connect": 2, "ssl": 2}
    samples = families["proxycheck_probe_phase_duration_seconds"].samples
    counts = {(s.labels["probe"], s.labels["phase"]): s.value for s in samples if s.name.endswith("_count")}
    assert counts == {("tcp_connect", "connect"): 2, ("ssl", "connect"): 2, ("ssl", "proxy_handshake"): 2,
                      ("ssl", "tls"): 2, ("ssl", "ttfb"): 2, ("ssl", "transfer"): 2}
    sums = {(s.labels["probe"], s.labels["phase"]): s.value for s in samples if s.name.endswith("_sum")}
    assert abs(sums[("ssl", "tls")] - 0.040) < 1e-9  # seconds, twice 20 ms


def fleet(**summary) -> dict:
    """The fleet gauges a scrape renders for one database read, by sample (name, labels)."""
    status = StatusSummary(counts={"healthy": 2, "unhealthy": 1, "unknown": 0, "disabled": 0}, total=3, instances=(),
                           checker_state="ok", checker_reason=None, last_round_at=None, top_codes=((25, 1),), overdue=0,
                           **summary)
    feedback = FeedbackSummary(window=600, max_percent=20, reports=0, applied=0, took_out=0, held_back=0, not_applied=0,
                               budget=1, enabled=3, out_now=0, by_error=(), last_report_at=None)
    metrics = DaemonMetrics(lambda: (status, feedback), targets=lambda: ["recaptcha", "hcaptcha", "turnstile"])
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples}


def test_every_configured_ban_target_is_exported_at_zero_too():
    banned = {labels[0][1]: v for (name, labels), v in fleet(bans=(("turnstile", 1), ("gone", 2))).items()
              if name == "proxycheck_banned_proxies"}
    assert banned == {"recaptcha": 0, "hcaptcha": 0, "turnstile": 1, "gone": 2}  # "gone": a target no longer configured


def test_dispatch_lag_is_the_oldest_unclaimed_wait():
    assert fleet()[("proxycheck_dispatch_lag_seconds", ())] == 0  # nothing waits
    lag = fleet(oldest_due_at=datetime.now(UTC) - timedelta(seconds=90))[("proxycheck_dispatch_lag_seconds", ())]
    assert 90 <= lag < 100


def test_each_vantage_sight_is_counted_by_vantage():
    from dataclasses import replace

    from proxycheck.vantage import Sight

    now = datetime.now(UTC)
    result = CheckResult(parse_proxy_url("http://203.0.113.7:3128"), False, 49, "ip_locked", "accepts ...", "vantage", (),
                         now, 42.0)
    result = replace(result, sights=(Sight("a", "192.0.2.7", "in", None, now),
                                     Sight("b", "192.0.2.8", "refused", "auth_required", now)))
    metrics = DaemonMetrics(lambda: None)
    metrics.observe(result)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    counted = {(s.labels["vantage"], s.labels["seen"]): s.value for s in families["proxycheck_vantage_sights"].samples
               if s.name.endswith("_total")}
    assert counted == {("a", "in"): 1, ("b", "refused"): 1}
