"""Prometheus metrics for the daemon, with prometheus_client (the reference client library).

Two kinds: event metrics the daemon updates as checks finish (rounds, checks by outcome, probe
latency histograms, and time per wire phase by probe, as blackbox_exporter reports phases: a slow
proxy shows in connect/proxy_handshake, a slow target in ttfb/transfer), and fleet gauges read from the database at scrape time by a custom
collector (proxies by state and code, bans by target, dispatch lag, checker state, worker reports, the guard rail and
each captcha service's error budget), so
every daemon sharing one PostgreSQL reports the same fleet figures. Each daemon has its own ``CollectorRegistry``: no globals.

Rules:
1. A series a dashboard draws is exported even at zero when its label values are known in
   advance (every state, every configured ban target), so a graph shows 0, not a gap.
2. Fleet gauges are the same on every daemon of one database: a dashboard takes ``max`` of them
   across instances, and ``sum`` of the event metrics (deploy/grafana/proxycheck.json does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .guard import GuardState
from .result import CheckResult
from .store.reports import FeedbackSummary
from .store.status import StatusSummary
from .verdict import error_name

# Probe latencies on loopback are milliseconds; through real proxies, up to the read timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0)
# A claim is late by the dispatch interval (0.25 s by default) when checking keeps up, by minutes
# when it does not.
CLAIM_DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
                       900.0, 1800.0, 3600.0)


Read = Callable[[], "tuple[StatusSummary, FeedbackSummary] | None"]
Targets = Callable[[], Iterable[str]]
Guards = Callable[[], "Mapping[str, GuardState] | None"]


class FleetCollector(Collector):
    def __init__(self, read: Read, targets: Targets = tuple, guards: Guards = lambda: None) -> None:
        self._read = read
        self._targets = targets  # the configured ban target names, read per scrape: SIGHUP may change them
        self._guards = guards  # store.guard.guard_states, per scrape

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
        banned = GaugeMetricFamily("proxycheck_banned_proxies", "Enabled proxies a ban target bans, by target",
                                   labels=["target"])
        # Every configured target (rule 1), and any other the database still names (a target
        # removed from the config whose bans have not been re-checked yet).
        by_target = dict.fromkeys(self._targets(), 0) | dict(summary.bans)
        for target, n in by_target.items():
            banned.add_metric([target], n)
        yield banned
        yield _gauge("proxycheck_dispatch_lag_seconds",
                     "How long the most overdue unclaimed proxy has waited past its scheduled check (0: none waits); "
                     "grows when checking cannot keep up", _seconds_since(summary.oldest_due_at))
        yield _gauge("proxycheck_overdue_proxies", "Enabled proxies whose check is more than 5 minutes late", summary.overdue)
        if summary.last_round_at is not None:
            yield _gauge("proxycheck_last_round_timestamp_seconds", "When checking last happened (Unix time)",
                         summary.last_round_at.timestamp())
        degraded = GaugeMetricFamily("proxycheck_checker_degraded", "1 when the checker cannot judge proxies (judge or network down)")
        degraded.add_metric([], 0 if summary.checker_state == "ok" else 1)
        yield degraded
        yield _gauge("proxycheck_live_daemons", "Daemons running (store/instances.py: heartbeat within 3 of their own intervals)", len(summary.instances))
        reports = GaugeMetricFamily("proxycheck_worker_reports", "Worker reports in the guard rail's window, by error",
                                    labels=["error"])
        for error, n in feedback.by_error:
            reports.add_metric([error or "success"], n)
        yield reports
        holding = GaugeMetricFamily("proxycheck_guard_rail_holding",
                                    "1 when the guard rail refused worker reports in its window (a worker may be misreporting)")
        holding.add_metric([], 1 if feedback.holding else 0)
        yield holding
        yield _gauge("proxycheck_guard_rail_budget_proxies", "How many proxies worker reports may take out per window",
                     feedback.budget)
        yield _gauge("proxycheck_guard_rail_taken_out_proxies", "Distinct proxies worker reports took out in the window",
                     feedback.took_out)
        yield _gauge("proxycheck_guard_rail_held_back_reports", "Worker reports the guard rail refused in the window",
                     feedback.held_back)
        yield from _guard_gauges(self._guards() or {})


def _guard_gauges(guards: Mapping[str, GuardState]) -> Iterator[GaugeMetricFamily]:
    """Each captcha service's error budget (guard.py): every documented or configured service,
    even at zero (rule 1)."""
    tripped = GaugeMetricFamily("proxycheck_guard_tripped",
                                "1 while a captcha service's error budget is spent: no proxy is handed out for it",
                                labels=["service"])
    errors = GaugeMetricFamily("proxycheck_guard_errors", "Proxy errors reported for a captcha service in its window",
                               labels=["service"])
    budget = GaugeMetricFamily("proxycheck_guard_budget",
                               "Proxy errors a captcha service may see per window before hand-out for it stops (0: off)",
                               labels=["service"])
    for service, g in guards.items():
        tripped.add_metric([service], 1 if g.tripped else 0)
        errors.add_metric([service], g.errors)
        budget.add_metric([service], g.budget)
    yield tripped
    yield errors
    yield budget


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _seconds_since(when: datetime | None) -> float:
    return max(0.0, (datetime.now(UTC) - when).total_seconds()) if when is not None else 0.0


class DaemonMetrics:
    def __init__(self, summary: Read, targets: Targets = tuple, guards: Guards = lambda: None) -> None:
        self.registry = CollectorRegistry()
        self.checks = Counter("proxycheck_checks", "Checks written, by outcome", ["outcome", "code"], registry=self.registry)
        self.sights = Counter("proxycheck_vantage_sights", "What each vantage point saw of the proxies it checked "
                              "(in, refused, unknown: vantage.py rule 2)", ["vantage", "seen"], registry=self.registry)
        self.rounds = Counter("proxycheck_dispatch_rounds", "Dispatch rounds that claimed at least one proxy", registry=self.registry)
        self.claim_delay = Histogram(
            "proxycheck_claim_delay_seconds",
            "How late each claimed proxy was: claimed minus its scheduled check (the dispatch lag a check saw)",
            buckets=CLAIM_DELAY_BUCKETS, registry=self.registry)
        self.probe_seconds = Histogram("proxycheck_probe_duration_seconds", "Probe duration through the proxy", ["probe"],
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.phase_seconds = Histogram(
            "proxycheck_probe_phase_duration_seconds",
            "Time in each wire phase (connect, proxy_handshake, tls, ttfb, transfer) of a probe's requests, by probe",
            ["probe", "phase"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(FleetCollector(summary, targets, guards))
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}

    def observe(self, result: CheckResult) -> None:
        """One stored check. Labelled children are looked up once and kept: ``labels()`` costs
        more than ``observe()``, and a check makes about twenty observations."""
        outcome = "healthy" if result.healthy else ("not_judged" if result.healthy is None else "unhealthy")
        self._child(self.checks, outcome, str(result.code or "")).inc()
        for sight in result.sights:
            self._child(self.sights, sight.vantage, sight.seen).inc()
        for probe in result.probes:
            # Only what ran now: a carried result (its schedule says not due) is an earlier run's,
            # already observed when it ran; counted again it would weigh rarely-run probes once per check.
            if not probe.skipped and not probe.carried:
                self._child(self.probe_seconds, probe.name).observe(probe.elapsed_ms / 1000)
                for phase, ms in probe.phases.items():
                    self._child(self.phase_seconds, probe.name, phase).observe(ms / 1000)

    def _child(self, metric, *labels: str):
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
