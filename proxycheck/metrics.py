"""Prometheus metrics for the daemon, with prometheus_client (the reference client library).

Two kinds: event metrics the daemon updates as checks finish (rounds, checks by outcome, probe
latency histograms, and time per wire phase by probe, as blackbox_exporter reports phases: a slow
proxy shows in connect/proxy_handshake, a slow target in ttfb/transfer), and fleet gauges read from the database at scrape time by a custom
collector (proxies by state and code, checker degraded, worker reports and the guard rail), so
every daemon sharing one PostgreSQL reports the same fleet figures. Each daemon has its own ``CollectorRegistry``: no globals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .result import CheckResult
from .store.reports import FeedbackSummary
from .store.status import StatusSummary
from .verdict import error_name

# Probe latencies on loopback are milliseconds; through real proxies, up to the read timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0)


Read = Callable[[], "tuple[StatusSummary, FeedbackSummary] | None"]


class FleetCollector(Collector):
    def __init__(self, read: Read) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        read = self._read()
        if read is None:
            return
        summary, feedback = read
        by_state = GaugeMetricFamily("proxycheck_proxies", "Proxies by health state", labels=["state"])
        for state, n in summary.counts.items():
            by_state.add_metric([state], n)
        yield by_state
        by_code = GaugeMetricFamily("proxycheck_unhealthy_proxies", "Unhealthy proxies by anti-captcha error",
                                    labels=["code", "error"])
        for code, n in summary.top_codes:
            by_code.add_metric([str(code), error_name(code) or ""], n)
        # Unhealthy without an anti-captcha code (a 2captcha catch-all or soft failures reported by
        # workers): labelled "none", so the family sums to proxycheck_proxies{state="unhealthy"}.
        without_code = summary.counts["unhealthy"] - sum(n for _, n in summary.top_codes)
        if without_code > 0:
            by_code.add_metric(["none", "none"], without_code)
        yield by_code
        banned = GaugeMetricFamily("proxycheck_banned_proxies",
                                   "Enabled proxies a ban target bans, by target (absent: none banned there)",
                                   labels=["target"])
        for target, n in summary.bans:
            banned.add_metric([target], n)
        yield banned
        degraded = GaugeMetricFamily("proxycheck_checker_degraded", "1 when the checker cannot judge proxies (judge or network down)")
        degraded.add_metric([], 0 if summary.checker_state == "ok" else 1)
        yield degraded
        reports = GaugeMetricFamily("proxycheck_worker_reports", "Worker reports in the guard rail's window, by error",
                                    labels=["error"])
        for error, n in feedback.by_error:
            reports.add_metric([error or "success"], n)
        yield reports
        holding = GaugeMetricFamily("proxycheck_guard_rail_holding",
                                    "1 when the guard rail refused worker reports in its window (a worker may be misreporting)")
        holding.add_metric([], 1 if feedback.holding else 0)
        yield holding


class DaemonMetrics:
    def __init__(self, summary: Read) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter("proxycheck_checks", "Checks written, by outcome", ["outcome", "code"], registry=self.registry)
        self.rounds = Counter("proxycheck_dispatch_rounds", "Dispatch rounds that claimed at least one proxy", registry=self.registry)
        self.probe_seconds = Histogram("proxycheck_probe_duration_seconds", "Probe duration through the proxy", ["probe"],
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.phase_seconds = Histogram(
            "proxycheck_probe_phase_duration_seconds",
            "Time in each wire phase (connect, proxy_handshake, tls, ttfb, transfer) of a probe's requests, by probe",
            ["probe", "phase"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(FleetCollector(summary))

    def observe(self, result: CheckResult) -> None:
        outcome = "healthy" if result.healthy else ("not_judged" if result.healthy is None else "unhealthy")
        self.checks.labels(outcome, str(result.code or "")).inc()
        for probe in result.probes:
            if not probe.skipped:
                self.probe_seconds.labels(probe.name).observe(probe.elapsed_ms / 1000)
                for phase, ms in probe.phases.items():
                    self.phase_seconds.labels(probe.name, phase).observe(ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
