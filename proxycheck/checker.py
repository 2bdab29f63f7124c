"""Runs the probe suite for one proxy, and for many with bounded concurrency.

Rules:
1. Probes run in ``probes.REGISTRY`` order; the first failure is the verdict and the rest are
   reported as skipped (no point testing images through a proxy that refuses connections).
2. ``internal_error`` (our bug) and ``checker_unavailable`` (our network) give ``healthy=None``:
   such a result never changes a proxy's state.
3. The result's summary (exit IP, anonymity, latency, the healthy detail) comes from the probes
   whose spec declares those fields in ``summary``, never from a position or a probe name.
4. A round is trusted only if the checker is fine before it *and* after it: when the post-round
   preflight fails, the round's failures become ``checker_unavailable`` (the judge may have died
   half-way), while its successes stand.
5. Probe schedules (probes/schedule.py): given each probe's last result, only the due probes
   run and the rest carry their result forward; rate-limited probes wait for their target
   hosts' tokens before their deadline starts.
6. A failure is the proxy's only if it survives a control, *at that moment* (this is the one
   place that decides it, for every probe): when a probe that fetches targets fails (or is
   unsure: a ban target's 5xx), the checker at once asks those targets directly what the probe
   asked them (the probe's own ``selftest``: the control; one in flight per probe, shared by
   every check that failed before it started). While the control fails the trouble is ours: it
   is asked again, backing off, until the probe's deadline (a check caught by a short outage
   resumes when the outage ends), and if it still fails the check is ``checker_unavailable``
   (no state changes, the proxy is rescheduled). When it passes, the probe runs once more through the proxy, on fresh connections, told what the
   control learnt (which judges answer; which ban targets answer us as they would a banned
   exit, and so cannot judge: their verdict is unknown). The second run's outcome is the
   probe's. A real failure thus costs one control request and one more try, and is stored at
   its first check; tcp_connect fetches no target, so refused and connect timeouts need none.
7. Vantages (vantage.py): connections to proxies leave from ``[check].source_address``. When the
   check's own sight is conclusive (in or refused), each ``[check].vantages`` entry runs the
   reach probes from its address, and those sights, with ``peers`` (other vantages' latest
   checks, read from the store by the caller), decide ``ip_locked`` (vantage.py rule 3), which
   replaces the verdict: the first failure of a service connecting from elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import geo, probes
from .config import Settings
from .probes.base import ProbeContext, run_probe, skipped
from .probes.schedule import HostRateLimit, carried, due_probes, target_hosts
from .proxy import Proxy
from .result import CheckResult, LastRun, ProbeOutcome
from .probes.base import ProbeSpec, SelfTestContext, TargetCheck
from .selftest import CheckerStatus, cannot_judge, direct_session, judges_up, preflight
from .transport import shared_ssl_context
from .vantage import IP_LOCKED, REACH_PROBES, VANTAGE_PROBE, Sight, Vantage, ip_lock, seen
from .verdict import CHECKER_UNAVAILABLE, INTERNAL_ERROR
from .wire import Session, Timeouts

# For demonstrations only (tests/test_never_blame_flapping.py's docstring): "0" turns rule 6's
# control off, to show that the flapping tests fail without it. Never set in production.
CONFIRM = os.environ.get("PROXYCHECK_UNSAFE_CONFIRM", "1") != "0"
CONTROL_RETRY = 0.25  # seconds before a failed control is asked again (rule 6)


@dataclass
class Round:
    status: CheckerStatus
    results: list[CheckResult]

    @property
    def checker_unavailable(self) -> bool:
        return not self.status.ok


class Checker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ssl_context = shared_ssl_context(settings.targets.ca_file)
        self.timeouts = Timeouts(settings.timeouts.connect, settings.timeouts.read)
        self.rate_limit = HostRateLimit(settings.probes.max_requests_per_host)  # shared by every check
        # When a check starts, for its results and for which probes are due; a simulation
        # (bench/schedule_bench.py) replaces it with a simulated clock.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.judges: tuple[str, ...] = ()  # the judges up, as the latest self-test or control found them
        # Ban target name (other targets: their key) -> what is wrong with it while the checker is
        # still OK (a spare judge down, a ban target that cannot judge), as the latest self-test,
        # control or verdict found it: status,
        # /healthz and the page name these (daemon/monitor.py ``state``).
        self.notes: dict[str, str] = {}
        self.controls = _Controls()
        # [geo] opened once (geo.py rule 3: re-read when the file changes); None: no database.
        self.geo = geo.from_settings(settings.geo)
        check = settings.check
        self.vantage = Vantage(check.vantage_name, check.source_address or None)
        self.extra_vantages = tuple(Vantage(n.strip(), a.strip()) for n, _, a in (v.partition("=") for v in check.vantages))
        # Our own addresses include every vantage's: a proxy revealing any of them is transparent.
        self.source_ips = frozenset(v.address for v in (self.vantage, *self.extra_vantages) if v.address)

    async def preflight(self) -> CheckerStatus:
        status = await preflight(self.settings, self.ssl_context)
        self.judges = status.judges
        self.notes = {}
        self._note(status.checks)
        if self.geo is not None and (problem := self.geo.recheck()):  # geo.py rule 3: shown, never a traceback
            self.notes["geo"] = f"geo database: {problem}"
        return status

    def _note(self, checks: Iterable[TargetCheck]) -> None:
        for c in checks:
            name = c.facts.get("name", c.key)  # a ban target by its name: a verdict can clear it
            if (not c.ok and not c.needed) or not c.judges:
                self.notes[name] = f"{c.key}: {c.found}"
            else:
                self.notes.pop(name, None)

    def _judged(self, outcome: ProbeOutcome) -> None:
        """A ban target that gave a verdict through a proxy can judge again: its note goes."""
        for name, verdict in (outcome.facts.get("targets") or {}).items():
            if verdict.get("banned") is not None:
                self.notes.pop(name, None)

    async def check(
        self, proxy: Proxy, own_ips: frozenset[str], *, last: Mapping[str, LastRun] | None = None,
        peers: Sequence[Sight] = (),
    ) -> CheckResult:
        """Run the suite on ``proxy``. With ``last`` (each probe's latest result on it, maybe
        none), only the due probes run and the others carry their result forward (rule 5);
        without it, every probe runs. ``peers``: other vantages' latest sights (rule 7)."""
        own_ips = own_ips | self.source_ips
        started_at = self.clock()
        started = time.perf_counter()
        outcomes: list[ProbeOutcome] = []
        summary: dict[str, Any] = {}
        failed: ProbeOutcome | None = None
        registry = probes.REGISTRY  # read once: a check runs one registry
        due = None if last is None else set(due_probes(self.settings, registry, last, started_at, proxy.key))
        ours: str | None = None  # a control request failed: the trouble is ours (rule 6)
        ctx = ProbeContext(proxy, self.settings, own_ips, self._session(proxy), judges=self.judges)
        try:
            for spec in registry:
                if failed is not None:
                    outcomes.append(skipped(spec.name, f"{failed.name} failed"))
                    continue
                if due is not None and last is not None and spec.name not in due:
                    outcome = carried(last[spec.name], started_at)
                else:
                    outcome = await self._run(spec, ctx)
                    if CONFIRM and spec.selftest is not None and _doubtful(outcome):
                        confirmed = await self._confirm(spec, ctx)
                        if isinstance(confirmed, str):
                            ours, failed = confirmed, outcome
                            outcomes.append(outcome)
                            continue
                        outcome = confirmed
                    if self.notes:
                        self._judged(outcome)
                outcomes.append(outcome)
                for key in spec.summary:
                    summary[key] = outcome.detail if key == "detail" else outcome.facts.get(key)
                if not outcome.ok:
                    failed = outcome
        finally:
            ctx.http.close()
        elapsed = (time.perf_counter() - started) * 1000
        warnings = tuple(proxy.address_warnings(ctx.resolved_ip))
        exit_ip = summary.get("exit_ip")
        common = dict(
            proxy=proxy, probes=tuple(outcomes), started_at=started_at, elapsed_ms=elapsed,
            exit_ip=exit_ip, anonymity=summary.get("anonymity"), resolved_ip=ctx.resolved_ip,
            warnings=warnings, latency_ms=summary.get("latency_ms"), targets=summary.get("targets"),
            geo=self.geo.lookup(exit_ip) if self.geo is not None and exit_ip else None,
        )
        if failed is None:
            passed = CheckResult(healthy=True, code=None, reason=None, detail=summary.get("detail") or "", probe=None, **common)
            return await self._vantages(passed, own_ips, peers)
        healthy = None if failed.reason == INTERNAL_ERROR else False
        result = CheckResult(healthy=healthy, code=failed.code, reason=failed.reason, detail=failed.detail,
                             probe=failed.name, **common)
        if ours is not None:
            return unavailable_result(proxy, f"{failed.name} failed, then our own direct control request failed too "
                                             f"({ours})", result)
        return await self._vantages(result, own_ips, peers)

    async def _vantages(self, result: CheckResult, own_ips: frozenset[str], peers: Sequence[Sight]) -> CheckResult:
        """Rule 7: what the other vantages see, and ``ip_locked`` if they disagree with us."""
        address = self.vantage.address or ", ".join(sorted(own_ips - self.source_ips)) or None
        mine = Sight(self.vantage.name, address, seen(result.healthy, result.reason), result.reason, result.started_at)
        result = dataclasses.replace(result, vantage=mine.vantage, vantage_ip=address, sights=(mine,))
        if mine.seen == "unknown" or not (self.extra_vantages or peers):
            return result
        extra = [await self._reach(result.proxy, v, own_ips, result.started_at) for v in self.extra_vantages]
        result = dataclasses.replace(result, sights=(mine, *extra))
        lock = ip_lock((mine, *extra, *peers), self.settings.solver.services)
        if lock is None:
            return result
        outcome = ProbeOutcome(VANTAGE_PROBE, False, lock.code, IP_LOCKED, lock.detail,
                               facts={"got_in": lock.got_in.as_dict(), "refused": lock.refused.as_dict()})
        return dataclasses.replace(result, healthy=False, code=lock.code, reason=IP_LOCKED, probe=VANTAGE_PROBE,
                                   detail=lock.detail, probes=(*result.probes, outcome))

    async def _reach(self, proxy: Proxy, vantage: Vantage, own_ips: frozenset[str], at: datetime) -> Sight:
        """The reach probes from another vantage's address (vantage.py rule 1). A refusal is asked
        once more on fresh connections: a lock refuses every time, a flaky proxy's reset does not."""
        sight = await self._reach_once(proxy, vantage, own_ips, at)
        return await self._reach_once(proxy, vantage, own_ips, at) if sight.seen == "refused" else sight

    async def _reach_once(self, proxy: Proxy, vantage: Vantage, own_ips: frozenset[str], at: datetime) -> Sight:
        ctx = ProbeContext(proxy, self.settings, own_ips, self._session(proxy, vantage.address), judges=self.judges)
        outcome: ProbeOutcome | None = None
        try:
            for spec in probes.REGISTRY:
                if spec.name in REACH_PROBES:
                    outcome = await self._run(spec, ctx)
                    if not outcome.ok:
                        break
        finally:
            ctx.http.close()
        if outcome is None:
            return Sight(vantage.name, vantage.address, "unknown", None, at)
        return Sight(vantage.name, vantage.address, seen(outcome.ok, outcome.reason), outcome.reason, at, outcome.detail)

    async def _control(self, spec: ProbeSpec, since: float) -> list[TargetCheck]:
        async def ask() -> list[TargetCheck]:
            async with direct_session(self.settings, self.ssl_context) as session:
                return await spec.selftest(SelfTestContext(self.settings, session))  # type: ignore[misc]

        return await self.controls.ask(spec, since, ask)

    def _session(self, proxy: Proxy, source: str | None = None) -> Session:
        return Session(proxy, self.ssl_context, self.timeouts, self.settings.probes.user_agent,
                       source or self.vantage.address)

    async def _run(self, spec: ProbeSpec, ctx: ProbeContext) -> ProbeOutcome:
        if spec.rate_limited:  # before run_probe: the wait is not the proxy's time
            await self.rate_limit.acquire(target_hosts(self.settings, spec))
        return await run_probe(spec, ctx)

    async def _confirm(self, spec: ProbeSpec, ctx: ProbeContext) -> ProbeOutcome | str:
        """Rule 6: the control (the probe's targets, asked directly), then, if it passed, the
        probe once more through the proxy on fresh connections. A control that fails is asked
        again (after 0.25 s, doubling up to 2 s) until the probe's deadline: a check caught by a
        short outage of ours resumes when it ends instead of starting over. A str: why the
        control failed until the deadline."""
        deadline = time.monotonic() + self.settings.timeouts.probe
        delay = CONTROL_RETRY
        while True:
            checks = await self._control(spec, time.monotonic())
            bad = next((c for c in checks if not c.ok and c.needed), None)
            if bad is None:
                break
            if time.monotonic() + delay > deadline:
                return f"{bad.key}: {bad.found}"
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)
        self._note(checks)
        if up := judges_up(checks):
            ctx.judges = self.judges = up
        ctx.cannot_judge = cannot_judge(checks)
        stale, ctx.http = ctx.http, self._session(ctx.proxy)
        stale.close()
        return await self._run(spec, ctx)

    async def check_many(
        self,
        proxies: Iterable[Proxy],
        *,
        concurrency: int | None = None,
        on_result: Callable[[CheckResult], None] | None = None,
        keep_results: bool = True,
    ) -> Round:
        """Check every proxy with at most ``concurrency`` at once. Streaming callers pass
        ``on_result`` and ``keep_results=False`` so memory stays flat in the number of proxies."""
        proxies = list(proxies)
        status = await self.preflight()
        if not status.ok:
            results = [unavailable_result(p, status.reason) for p in proxies]
            for r in results:
                if on_result:
                    on_result(r)
            return Round(status, results)
        # A fixed pool of workers over one queue: memory stays flat in the number of proxies
        # (one task per proxy would cost ~1.4 KB each while waiting).
        results: list[CheckResult | None] = [None] * len(proxies) if keep_results else []
        todo = iter(enumerate(proxies))
        failures = 0

        async def worker() -> None:
            nonlocal failures
            for index, proxy in todo:
                result = await self.check(proxy, status.own_ips)
                failures += result.healthy is False
                if keep_results:
                    results[index] = result
                if on_result:
                    on_result(result)

        workers = min(concurrency or self.settings.check.concurrency, len(proxies)) or 1
        await asyncio.gather(*(worker() for _ in range(workers)))
        results = [r for r in results if r is not None]
        if failures:
            after = await self.preflight()
            if not after.ok:
                results = [r if r.healthy else unavailable_result(r.proxy, after.reason, r) for r in results]
                return Round(after, results)
        return Round(status, results)


class _Controls:
    """One control in flight per probe, shared (rule 6): a check whose probe failed at ``since``
    takes the answer of a control that started at or after ``since``, else waits for the next.
    A fleet failing at once (an outage of ours) sends one direct request per target, not one per
    proxy: a ban target is never hammered from our own address."""

    def __init__(self) -> None:
        self._flights: dict[str, tuple[asyncio.AbstractEventLoop, float, asyncio.Task]] = {}

    async def ask(self, spec: ProbeSpec, since: float, ask: Callable[[], Awaitable[list[TargetCheck]]]) -> list[TargetCheck]:
        loop = asyncio.get_running_loop()
        while True:
            flight = self._flights.get(spec.name)
            if flight is not None and flight[0] is loop and not flight[2].done():
                if flight[1] >= since:
                    return await asyncio.shield(flight[2])
                await asyncio.wait([flight[2]])  # started before our failure: the next one is ours
                continue
            task = loop.create_task(ask(), name=f"control {spec.name}")
            self._flights[spec.name] = (loop, time.monotonic(), task)
            return await asyncio.shield(task)


def _doubtful(outcome: ProbeOutcome) -> bool:
    """A failure that may be ours (not a bug of ours: that is never the proxy's either), or an
    answer the probe could not read as a verdict either way."""
    return (not outcome.ok and outcome.reason != INTERNAL_ERROR) or bool(outcome.facts.get("unsure"))


def unavailable_result(proxy: Proxy, why: str, original: CheckResult | None = None) -> CheckResult:
    detail = f"checker unavailable, proxy not judged: {why}"
    if original is not None:
        return dataclasses.replace(original, healthy=None, code=None, reason=CHECKER_UNAVAILABLE, detail=detail, probe=None)
    return CheckResult(proxy=proxy, healthy=None, code=None, reason=CHECKER_UNAVAILABLE, detail=detail, probe=None,
                       probes=(), started_at=datetime.now(UTC), elapsed_ms=0.0,
                       warnings=tuple(proxy.address_warnings()))
