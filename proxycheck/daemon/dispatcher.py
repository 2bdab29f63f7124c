"""The dispatcher: one claim loop, used by ``run`` and ``run --once`` alike.

Rules:
1. Dispatch never awaits a probe. ``fill()`` claims due proxies up to the free concurrency (a
   lease: several daemons on one PostgreSQL never check the same proxy) and spawns one tracked
   task per claim. ``run()`` calls it every ``dispatch_interval`` (sooner when woken: a sync
   added proxies); ``run_once()`` calls it until nothing is due and nothing is in flight.
   When a look took as many as it could (more may be due), it looks again as soon as a batch's
   worth of slots is free (``refill_batch``: an eighth of the concurrency) instead of waiting
   for the interval: otherwise one look per interval caps the daemon at ``concurrency`` checks
   per ``dispatch_interval`` however fast the checks are. A look that found fewer than it asked
   for waits for the interval (or a wake), so an idle fleet costs one claim per interval.
2. Nothing is claimed while the checker is degraded, while the writer holds its cap of
   unwritten results, or once the daemon is stopping.
3. A check's failure is handed on only after the monitor confirms the checker was good for the
   check's window (``monitor.py``); otherwise it becomes ``checker_unavailable``. A confirming
   check no longer takes a concurrency slot: only probing does.
4. A bug inside one check (an exception out of ``Checker.check``) is logged with its traceback
   and its proxy rescheduled; it never stops the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from .. import store
from ..checker import unavailable_result
from ..config import Settings
from ..metrics import DaemonMetrics
from ..store.leases import Claim
from .monitor import CheckerMonitor
from .storage import Storage
from .writer import Done, Writer

log = logging.getLogger("proxycheck.daemon")

NEW_PROXIES_LOG_EVERY = 10.0


class Dispatcher:
    def __init__(self, storage: Storage, settings: Callable[[], Settings], instance_id: str,
                 monitor: CheckerMonitor, writer: Writer, metrics: DaemonMetrics, stopping: asyncio.Event) -> None:
        self.storage = storage
        self.settings = settings
        self.instance_id = instance_id
        self.monitor = monitor
        self.writer = writer
        self.metrics = metrics
        self.stopping = stopping
        self.inflight: dict[asyncio.Task, Claim] = {}  # probing or waiting for confirmation
        self.probing: set[asyncio.Task] = set()
        self.last_progress = time.monotonic()
        self.wake = asyncio.Event()
        self._new_seen = 0
        self._new_logged_at = 0.0
        self._paused_logged = False
        self._more_due = False  # the last look took all it asked for: more may be due (rule 1)

    def refill_batch(self) -> int:
        return max(1, self.settings().check.concurrency // 8)

    async def fill(self) -> int:
        """One look for due proxies; returns how many were claimed."""
        self.last_progress = time.monotonic()
        settings = self.settings()
        self._more_due = False
        if self.stopping.is_set() or not self.monitor.status.ok:
            return 0
        if self.writer.backpressure:
            if not self._paused_logged:
                log.warning("not claiming: %d checked results wait for the database (cap %d)", len(self.writer.held),
                            self.writer.cap)
                self._paused_logged = True
            return 0
        self._paused_logged = False
        free = settings.check.concurrency - len(self.probing)
        if free <= 0:
            return 0
        claims = await self.storage.attempt(store.claim_due, self.storage.engine, self.instance_id, free,
                                            settings.daemon.lease_seconds, vantage=settings.check.vantage_name,
                                            peer_window=settings.worker.max_age)
        self._more_due = claims is not None and len(claims) >= free
        for claim in claims or ():
            task = asyncio.create_task(self._check(claim), name=f"check {claim.proxy.masked_url}")
            self.inflight[task] = claim
            self.probing.add(task)
            task.add_done_callback(self._finished)
        if claims:
            self.metrics.rounds.inc()
            now = datetime.now(UTC)
            for claim in claims:
                self.metrics.claim_delay.observe(max(0.0, (now - claim.due_at).total_seconds()))
            self._log_new(claims)
        return len(claims or ())

    async def run(self) -> None:
        """Side task: claim every ``dispatch_interval`` until the daemon stops."""
        while not self.stopping.is_set():
            self.wake.clear()  # before the look: a wake during it (slots freed, a sync) is kept
            await self.fill()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.settings().daemon.dispatch_interval)
            except TimeoutError:
                pass

    async def run_once(self) -> None:
        """``--once``: check every due proxy (claiming until none is left), then return. While more
        are due it claims when a batch's worth of slots is free (rule 1), not after every check."""
        while True:
            self.wake.clear()
            claimed = await self.fill()
            if not claimed and not self.inflight:
                return
            if self._more_due:
                await self.wake.wait()
            elif self.inflight:
                await asyncio.wait(list(self.inflight), return_when=asyncio.FIRST_COMPLETED)

    async def drain(self, grace: float) -> None:
        """Stop: let checks finish for ``grace`` seconds, cancel the rest and release their leases."""
        if not self.inflight:
            return
        _, pending = await asyncio.wait(list(self.inflight), timeout=grace)
        if not pending:
            return
        abandoned = [self.inflight[t] for t in pending if t in self.inflight]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for claim in abandoned:
            self.writer.put(Done(claim, None))
        log.warning("cancelled %d checks still running after the %g s grace period", len(pending), grace)

    def _finished(self, task: asyncio.Task) -> None:
        self.inflight.pop(task, None)
        self._free_slot(task)

    def _free_slot(self, task: asyncio.Task | None) -> None:
        """A check stopped probing: look again at once if more are due and a batch is free (rule 1)."""
        self.probing.discard(task)  # type: ignore[arg-type]
        if self._more_due and not self.wake.is_set() and \
                self.settings().check.concurrency - len(self.probing) >= self.refill_batch():
            self.wake.set()

    async def _check(self, claim: Claim) -> None:
        started = time.monotonic()
        try:
            result = await self.monitor.checker.check(claim.proxy, self.monitor.status.own_ips, last=claim.last_probes,
                                                      peers=claim.peers)
        except Exception:  # noqa: BLE001 - one bad proxy never kills the daemon (rule 4)
            log.exception("checking %s failed inside proxycheck; rescheduling it", claim.proxy.masked_url)
            self.writer.put(Done(claim, unavailable_result(claim.proxy, "internal error (logged)")))
            return
        finally:
            self._free_slot(asyncio.current_task())
        if result.healthy is False and not await self.monitor.confirm(started):
            result = unavailable_result(claim.proxy, self.monitor.status.reason or "checker not confirmed", result)
        self.writer.put(Done(claim, result))

    def _log_new(self, claims: list[Claim]) -> None:
        """Say when never-checked proxies (a sync or an import) get their first check."""
        self._new_seen += sum(1 for c in claims if c.never_checked)
        now = time.monotonic()
        if self._new_seen and now - self._new_logged_at >= NEW_PROXIES_LOG_EVERY:
            log.info("first check of %d new proxies under way", self._new_seen)
            self._new_seen, self._new_logged_at = 0, now
