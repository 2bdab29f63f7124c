"""The daemon: a few fixed APScheduler jobs around a database of proxies that are due.

Rules:
1. Per-proxy schedules live in the database (``next_check_at``), not in the scheduler: 100,000
   proxies cost rows, not jobs. The jobs are fixed: dispatch, source sync, retention, checker
   refresh (own IP + reachability), heartbeat.
2. Dispatch never awaits a probe. It claims due proxies up to the free concurrency (a lease, so
   several daemons on one PostgreSQL never check the same proxy) and spawns tracked tasks.
3. Results go through one writer task that commits in batches (SQLite has one writer), fenced by
   the lease token. A result is written only if the checker was fine around it: failures are
   confirmed by a fresh preflight before they are stored; if the checker is down they are
   rescheduled and no proxy's state changes.
4. SIGTERM: stop claiming, let in-flight checks finish for ``drain_grace`` seconds, cancel the
   rest (their leases are released), write every completed result, exit 0. SIGHUP: re-read the
   config's sources and sync them.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
import signal
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from . import health
from .checker import Checker
from .config import Settings, load_settings
from .errors import ProxycheckError, StorageError
from .metrics import DaemonMetrics
from .preflight import CheckerStatus
from .result import CheckResult
from .sdnotify import Notifier, watchdog_interval
from .sources import read_csv_file
from . import store
from .store.engine import make_engine, masked_url
from .store.leases import Claim
from .store.migrate import check_at_head
from .store.reports import feedback_summary, guard_rail, prune_reports
from .store.schedule import spread_overdue
from .verdict import ERROR_NAMES

if TYPE_CHECKING:
    from .http_api import HttpApi

log = logging.getLogger("proxycheck.daemon")

# A failure is only stored if the checker was verified fine at most this long before.
PREFLIGHT_MAX_AGE = 30.0
# How often a degraded checker re-tests itself.
DEGRADED_RETRY = 15.0


@dataclass
class _Done:
    claim: Claim
    result: CheckResult


class SingleDaemonLock:
    """SQLite supports one writer daemon per database file: an flock next to it enforces that."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".daemon.lock")
        self._fh = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            self._fh = None
            raise ProxycheckError(
                f"another proxycheck daemon ({holder}) is already using {self.path.with_suffix('').with_suffix('')}; "
                "SQLite allows one daemon per database — stop it, or use PostgreSQL (database_url) to run several"
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self._fh.flush()

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class Daemon:
    def __init__(self, settings: Settings, *, config_path: str | None = None, once: bool = False) -> None:
        self.settings = settings
        self.config_path = config_path
        self.once = once
        self.url = settings.resolved_database_url
        self.instance_id = uuid.uuid4().hex
        self.checker = Checker(settings)
        self.notifier = Notifier()
        self.rng = random.Random()
        self.status = CheckerStatus(False, "not checked yet")
        self.status_at = 0.0
        self.inflight: dict[asyncio.Task, Claim] = {}
        self.results: asyncio.Queue[_Done | None] = asyncio.Queue()
        self.stop_event = asyncio.Event()
        self.last_round_at: datetime | None = None
        self.last_progress = time.monotonic()
        self.checks_done = 0
        self.counts: dict[str, int] = {}
        self._lock: SingleDaemonLock | None = None
        self.metrics = DaemonMetrics(self._summary_or_none)
        self.http: HttpApi | None = None
        self._preflight_lock = asyncio.Lock()

    # -- start and stop --------------------------------------------------------------------------
    def _open_storage(self) -> None:
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            db_path = Path(url.database)
            if not db_path.exists():
                raise StorageError(f"database {db_path} does not exist yet: run `proxycheck db upgrade` first")
            self._lock = SingleDaemonLock(db_path)
            self._lock.acquire()
        check_at_head(self.url)
        self.engine = make_engine(self.url, writer=True)
        # Reads for status, metrics and the HTTP endpoint: on SQLite the writer engine takes the
        # write lock for every transaction, and a scrape must not queue behind check write-backs.
        self.reader = make_engine(self.url, writer=False)

    async def run(self) -> int:
        self._open_storage()
        try:
            return await self._run()
        finally:
            self.engine.dispose()
            self.reader.dispose()
            if self._lock:
                self._lock.release()
            self.notifier.close()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        now = datetime.now(UTC)
        await asyncio.to_thread(store.register_instance, self.engine, instance_id=self.instance_id,
                                hostname=socket.gethostname(), pid=os.getpid(), now=now)
        log.info("proxycheck daemon %s starting on %s", self.instance_id[:8], masked_url(self.url))
        await self.sync_sources()
        if not self.once:
            spread = await asyncio.to_thread(spread_overdue, self.engine, now, self.settings.health.interval, self.rng)
            if spread:
                log.info("spread %d overdue proxies over the next %g s", spread, self.settings.health.interval)
        await self.refresh_checker()
        writer = asyncio.create_task(self._writer(), name="result-writer")
        if self.once:
            await self._one_round()
            await self._drain(writer)
            await self._heartbeat(stopped=True)
            return 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        scheduler = self._scheduler()
        scheduler.start()
        if self.settings.http.enabled:
            await self._start_http()
        self.notifier.ready(self._status_text())
        log.info("ready: %s", self._status_text())
        watchdog = asyncio.create_task(self._watchdog()) if watchdog_interval() else None
        await self.stop_event.wait()
        log.info("stopping: waiting up to %g s for %d in-flight checks", self.settings.daemon.drain_grace, len(self.inflight))
        self.notifier.stopping()
        scheduler.shutdown(wait=False)
        if watchdog:
            watchdog.cancel()
        await self._drain(writer)
        if self.http is not None:
            await self.http.stop()
            self.http.pool.close()
        await self._heartbeat(stopped=True)
        log.info("stopped after %d checks", self.checks_done)
        return 0

    def _scheduler(self) -> AsyncIOScheduler:
        d = self.settings.daemon
        scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
        scheduler.add_job(self.dispatch, "interval", seconds=d.dispatch_interval, id="dispatch")
        scheduler.add_job(self.sync_sources, "interval", seconds=d.sync_interval, id="sync_sources", jitter=min(30, d.sync_interval / 10))
        scheduler.add_job(self.retention, "interval", seconds=d.retention_interval, id="retention", jitter=min(60, d.retention_interval / 10))
        scheduler.add_job(self.refresh_checker, "interval", seconds=d.own_ip_interval, id="own_ip", jitter=min(30, d.own_ip_interval / 10))
        scheduler.add_job(self._heartbeat, "interval", seconds=10, id="heartbeat")
        return scheduler

    async def _drain(self, writer: asyncio.Task) -> None:
        if self.inflight:
            done, pending = await asyncio.wait(list(self.inflight), timeout=self.settings.daemon.drain_grace)
            abandoned = [self.inflight[t] for t in pending if t in self.inflight]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                await self._db(store.release_claims, self.engine, abandoned)
                log.warning("cancelled %d checks still running after the %g s grace period", len(pending), self.settings.daemon.drain_grace)
        await self.results.put(None)
        await writer

    async def _start_http(self) -> None:
        from .http_api import HttpApi
        from .worker import ProxyPool

        pool = ProxyPool(self.url, config=self.config_path, settings=self.settings.worker)
        self.http = HttpApi(self.settings, self.reader, pool, self.metrics, lambda: (self.status.state, self.status.reason))
        try:
            url = await self.http.start()
        except OSError as exc:
            raise ProxycheckError(f"cannot serve HTTP on [http].listen {self.settings.http.listen}: {exc.strerror or exc}") from None
        log.info("HTTP endpoint on %s", url)

    def _summary_or_none(self):
        """What a scrape reads from the database: the fleet and the worker reports."""
        try:
            summary = store.status_summary(self.reader, top=len(ERROR_NAMES))  # every code, not the top 5
            return summary, feedback_summary(self.reader, guard_rail(self.settings.worker))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the DB blinked
            log.warning("metrics: cannot read the fleet summary: %s", exc)
            return None

    # -- jobs ------------------------------------------------------------------------------------
    async def dispatch(self) -> None:
        self.last_progress = time.monotonic()
        if self.stop_event.is_set():
            return
        if not self.status.ok:
            if time.monotonic() - self.status_at >= DEGRADED_RETRY:
                await self.refresh_checker()
            if not self.status.ok:
                return
        free = self.settings.check.concurrency - len(self.inflight)
        if free <= 0:
            return
        claims = await self._db(store.claim_due, self.engine, self.instance_id, free, self.settings.daemon.lease_seconds)
        for claim in claims or ():
            task = asyncio.create_task(self._check(claim), name=f"check {claim.proxy.masked_url}")
            self.inflight[task] = claim
            task.add_done_callback(self._finished)
        if claims:
            self.last_round_at = datetime.now(UTC)
            self.metrics.rounds.inc()

    def _finished(self, task: asyncio.Task) -> None:
        self.inflight.pop(task, None)

    async def _check(self, claim: Claim) -> None:
        try:
            result = await self.checker.check(claim.proxy, self.status.own_ips, last=claim.last_probes)
        except Exception:  # noqa: BLE001 - one bad proxy never kills the daemon
            log.exception("checking %s failed inside proxycheck; rescheduling it", claim.proxy.masked_url)
            await self._db(store.reschedule_unavailable, self.engine, [claim], self._retry_at())
            return
        if result.healthy is False and not await self._checker_confirmed():
            from .checker import unavailable_result

            result = unavailable_result(claim.proxy, self.status.reason, result)
        await self.results.put(_Done(claim, result))

    async def _checker_confirmed(self) -> bool:
        """Before a failure is stored: is the checker itself still fine (recently verified)?"""
        if self.status.ok and time.monotonic() - self.status_at <= PREFLIGHT_MAX_AGE:
            return True
        await self.refresh_checker()
        return self.status.ok

    async def refresh_checker(self) -> None:
        async with self._preflight_lock:
            if time.monotonic() - self.status_at < 1.0:
                return
            try:
                status = await self.checker.preflight()
            except Exception as exc:  # noqa: BLE001 - a broken preflight means degraded, not a crash
                log.exception("checker self-test failed")
                status = CheckerStatus(False, f"self-test failed: {exc}")
            if status.ok != self.status.ok or status.reason != self.status.reason:
                if status.ok:
                    log.info("checker OK; own IPs: %s", ", ".join(sorted(status.own_ips)))
                else:
                    log.warning("checker degraded, no proxy will be judged: %s", status.reason)
            self.status, self.status_at = status, time.monotonic()
        await self._heartbeat()

    async def sync_sources(self) -> None:
        now = datetime.now(UTC)
        for path in self.settings.daemon.sources:
            try:
                loaded = await asyncio.to_thread(read_csv_file, path)
            except ProxycheckError as exc:
                log.error("source %s not synced: %s", path, exc)
                continue
            for line in loaded.error_lines(note=" (skipped)"):
                log.warning("%s", line)
            report = await self._db(store.sync_source, self.engine, f"csv:{path}", loaded.deduplicated(), now,
                                    policy=self.settings.health, rng=self.rng, spread=not self.once,
                                    concurrency=self.settings.check.concurrency)
            if report is not None and (report.added or report.updated or report.disabled):
                log.info("synced %s: %d added, %d updated, %d disabled", path, report.added, report.updated, report.disabled)

    async def reload(self) -> None:
        self.notifier.reloading()
        log.info("SIGHUP: re-reading the configuration's sources")
        try:
            fresh = load_settings(self.config_path)
            if fresh.daemon.sources != self.settings.daemon.sources:
                log.info("sources changed: %s", ", ".join(fresh.daemon.sources) or "none")
            self.settings = _with_sources(self.settings, fresh.daemon.sources)
        except ProxycheckError as exc:
            log.error("configuration not reloaded, keeping the old one: %s", exc)
        await self.sync_sources()
        self.notifier.ready(self._status_text())

    async def retention(self) -> None:
        d = self.settings.daemon
        deleted = await self._db(store.apply_retention, self.engine, datetime.now(UTC),
                                 keep_per_proxy=d.keep_checks_per_proxy, keep_success_days=d.keep_success_days,
                                 keep_failure_days=d.keep_failure_days)
        if deleted:
            log.info("retention removed %d old checks", deleted)
        # Worker reports are evidence like failed checks: kept as long, and never inside the guard rail's window.
        keep = max(d.keep_failure_days * 86400, self.settings.worker.report_window)
        pruned = await self._db(prune_reports, self.engine, datetime.now(UTC) - timedelta(seconds=keep))
        if pruned:
            log.info("retention removed %d old worker reports", pruned)

    async def _heartbeat(self, stopped: bool = False) -> None:
        await self._db(store.heartbeat, self.engine, self.instance_id, checker_state=self.status.state,
                       checker_reason=self.status.reason or None, last_round_at=self.last_round_at,
                       own_ips=sorted(self.status.own_ips))
        if stopped:
            await self._db(store.mark_stopped, self.engine, self.instance_id)
        elif self.notifier.enabled:
            summary = await self._db(store.status_summary, self.reader)
            if summary is not None:
                self.counts = summary.counts
        self.notifier.status(self._status_text())

    async def _watchdog(self) -> None:
        interval = watchdog_interval() or 10.0
        stall = max(interval * 2, self.settings.daemon.dispatch_interval * 5)
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.last_progress <= stall:
                self.notifier.watchdog()
            else:
                log.error("dispatch made no progress for %.0f s; not pinging the watchdog", time.monotonic() - self.last_progress)

    # -- the writer ------------------------------------------------------------------------------
    async def _writer(self) -> None:
        """The single writer: batches of results, fenced by lease token, in one transaction each."""
        stopping = False
        while not stopping:
            item = await self.results.get()
            batch: list[_Done] = []
            if item is None:
                stopping = True
            else:
                batch.append(item)
            while not self.results.empty() and len(batch) < 500:
                nxt = self.results.get_nowait()
                if nxt is None:
                    stopping = True
                else:
                    batch.append(nxt)
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[_Done]) -> None:
        now = datetime.now(UTC)
        judged, unjudged = [], []
        for done in batch:
            if done.result.healthy is None:
                unjudged.append(done.claim)
                continue
            transition = health.advance(done.claim.state, healthy=bool(done.result.healthy), code=done.result.code,
                                        reason=done.result.reason, now=now, policy=self.settings.health, rng=self.rng)
            judged.append((done.claim, done.result, transition))
        for attempt in range(1, 6):
            try:
                if judged:
                    await asyncio.to_thread(store.record_results, self.engine, judged, self.instance_id)
                if unjudged:
                    await asyncio.to_thread(store.reschedule_unavailable, self.engine, unjudged, self._retry_at())
                break
            except Exception:  # noqa: BLE001 - keep results in hand and retry; the DB may be restarting
                log.exception("writing %d results failed (attempt %d of 5)", len(batch), attempt)
                await asyncio.sleep(min(2 ** attempt, 10))
        else:
            log.error("gave up writing %d results; their proxies will be re-checked when their leases expire", len(batch))
            return
        self.checks_done += len(judged)
        for done in batch:
            self.metrics.observe(done.result)
        self.last_progress = time.monotonic()

    # -- helpers ---------------------------------------------------------------------------------
    async def _one_round(self) -> None:
        """``--once``: check every due proxy (claiming until none is left), then return."""
        if not self.status.ok:
            log.error("checker unavailable, no proxy judged: %s", self.status.reason)
            return
        while True:
            free = self.settings.check.concurrency - len(self.inflight)
            if free > 0:
                claims = await self._db(store.claim_due, self.engine, self.instance_id, free, self.settings.daemon.lease_seconds)
                for claim in claims or ():
                    task = asyncio.create_task(self._check(claim))
                    self.inflight[task] = claim
                    task.add_done_callback(self._finished)
                if claims:
                    self.last_round_at = datetime.now(UTC)
                elif not self.inflight:
                    return
            if self.inflight:
                await asyncio.wait(list(self.inflight), return_when=asyncio.FIRST_COMPLETED)

    def _retry_at(self) -> datetime:
        return health.retry_after_unavailable(datetime.now(UTC), self.settings.health)

    async def _db(self, fn, *args, **kwargs):
        """Run a storage call in a thread; a database outage is logged, never fatal."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            log.error("database call %s failed: %s", fn.__name__, exc)
            return None

    def _status_text(self) -> str:
        checker = "checker ok" if self.status.ok else f"checker DEGRADED: {self.status.reason}"
        fleet = ", ".join(f"{n} {state}" for state, n in self.counts.items() if n)
        return f"{fleet or 'no proxies yet'}; {checker}; {self.checks_done} checks, {len(self.inflight)} in flight"


def _with_sources(settings: Settings, sources: tuple[str, ...]) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, daemon=dataclasses.replace(settings.daemon, sources=sources))


def run_daemon(settings: Settings, *, config_path: str | None, once: bool) -> int:
    return asyncio.run(Daemon(settings, config_path=config_path, once=once).run())

