"""The runner: the daemon's lifecycle. Open storage, build the parts and hand each what it uses,
start them, apply a reload, stop them in order.

Rules:
1. The runner alone holds every part; a part is given the narrow things it uses (the storage,
   the current settings as ``lambda: self.settings``, the monitor, a wake callback), never the
   daemon. Side tasks are tracked by ``supervise.py`` and the periodic jobs run on APScheduler
   (``periodic.py``): a bug in either stops the daemon with exit code 1, so systemd restarts it
   visibly. Storage errors never get this far (``storage.py``).
2. Signals are handled only while the daemon runs (``signals.handled``). SIGTERM/SIGINT: stop
   claiming, let in-flight checks finish for ``drain_grace`` seconds, cancel the rest (their
   leases are released), write every completed result, exit 0 — within ``drain_grace`` + 5 s
   even when the database is down (what cannot be written is counted in the log). SIGHUP: the
   file is loaded again and ``reload.plan`` applied; the reload always ends with READY=1.
3. On SQLite the flock proves no other daemon runs: leases left in the file are a dead daemon's
   and are taken back at once, so its in-flight proxies are checked again right after a restart
   (taken back *after* overdue proxies are spread over one ``[health].interval``, so they stay
   due now), and every other instance row not marked stopped is marked stopped (it is dead).
4. ``proxycheck run`` owns its process: ``run_daemon`` tunes the garbage collector before
   anything starts and has what start-up made frozen just before READY (``gc_policy.py``). A
   daemon run inside another process (the demo, tests) leaves that process's collector alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from .. import loop, store
from ..checker import Checker
from ..config import Settings, load_settings
from ..errors import ProxycheckError, StorageError
from ..notify import Notifications
from ..selftest import CheckerStatus
from ..sdnotify import Notifier, watchdog_interval
from ..store.engine import make_engine, masked_url
from ..store.migrate import check_at_head
from ..store.schedule import spread_overdue
from . import gc_policy, jobs, notifying, signals
from . import reload as reloading
from .dispatcher import Dispatcher
from .lock import SingleDaemonLock
from .monitor import CheckerMonitor
from .periodic import Periodic
from .publish import Publisher, watchdog
from .scrape import daemon_metrics
from .storage import Storage
from .supervise import SideTasks
from .writer import Writer

if TYPE_CHECKING:
    from ..http_api import HttpApi

log = logging.getLogger("proxycheck.daemon")

EXIT_BUDGET = 5.0  # seconds past drain_grace by which a stopping daemon has exited


class Daemon:
    def __init__(self, settings: Settings, *, config_path: str | None = None, once: bool = False,
                 started: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.started = started  # called once, just before READY (rule 4: only the process's owner passes it)
        self.config_path = config_path
        self.once = once
        self.url = settings.resolved_database_url
        self.postgresql = make_url(self.url).get_backend_name() == "postgresql"
        self.instance_id = uuid.uuid4().hex
        self.notifier = Notifier()
        self.rng = random.Random()
        self.http: HttpApi | None = None
        self._lock: SingleDaemonLock | None = None

    # -- what the demo and tests read ------------------------------------------------------------
    @property
    def status(self) -> CheckerStatus:
        return self.monitor.status

    @property
    def checks_done(self) -> int:
        return self.writer.checks_done

    @property
    def last_round_at(self) -> datetime | None:
        return self.writer.last_round_at

    # -- start -----------------------------------------------------------------------------------
    def _open_storage(self) -> None:
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            db_path = Path(url.database)
            if not db_path.exists():
                raise StorageError(f"database {db_path} does not exist yet: run `proxycheck db upgrade` first")
            self._lock = SingleDaemonLock(db_path)
            self._lock.acquire()
        check_at_head(self.url)
        # Reads for status, metrics and the HTTP endpoint go through a reader engine: on SQLite the
        # writer takes the write lock for every transaction, and a scrape must not queue behind it.
        self.storage = Storage(make_engine(self.url, writer=True), make_engine(self.url, writer=False))

    async def run(self) -> int:
        try:
            self._open_storage()
        except BaseException:
            self._release()
            raise
        try:
            return await self._run()
        finally:
            self.storage.close()
            self._release()

    def _release(self) -> None:
        if self._lock:
            self._lock.release()
        self.notifier.close()

    def _build(self) -> None:
        """Every part, each given what it uses."""
        settings = lambda: self.settings  # noqa: E731 - read at each use: a SIGHUP replaces it
        self.stopping = asyncio.Event()
        self.side = SideTasks(self.stopping)
        self.metrics = daemon_metrics(self.storage.reader, settings)
        self.monitor = CheckerMonitor(Checker(self.settings), self.settings.daemon.heartbeat_interval,
                                      lambda: self.publisher.publish())
        self.writer = Writer(self.storage, settings, self.instance_id, self.metrics)
        self.dispatcher = Dispatcher(self.storage, settings, self.instance_id, self.monitor, self.writer,
                                     self.metrics, self.stopping)
        self.publisher = Publisher(self.storage, self.instance_id, self.notifier, self.monitor, self.writer,
                                   lambda: len(self.dispatcher.inflight), lambda: self.settings.daemon.heartbeat_interval)
        self.notifications = Notifications(self.settings.notify, {"id": self.instance_id[:8], "host": socket.gethostname()})
        self.periodic = Periodic({
            "source_sync": self._sync_sources,
            "retention": lambda: jobs.retention(self.storage, self.settings),
            "own_ip_refresh": self.monitor.selftest,
            "heartbeat": lambda: jobs.heartbeat(self.storage, self.publisher.publish,
                                                reclaim=self.postgresql, wake=self.dispatcher.wake.set),
            "notify": lambda: notifying.observe(self.notifications, self.storage, self.monitor, self.settings),
        }, on_bug=self.side.bug)

    async def _sync_sources(self) -> bool:
        return await jobs.sync_sources(self.storage, self.settings, self.rng, spread=not self.once,
                                       wake=self.dispatcher.wake.set, monitor=self.monitor)

    async def _run(self) -> int:
        self._build()
        engine = self.storage.engine
        await self.storage.call(store.register_instance, engine, instance_id=self.instance_id,
                                hostname=socket.gethostname(), pid=os.getpid(),
                                heartbeat_interval=self.settings.daemon.heartbeat_interval)
        log.info("proxycheck daemon %s starting on %s", self.instance_id[:8], masked_url(self.url))
        if self._lock is not None:  # rule 3: every other instance row is a dead daemon's
            await self.storage.call(store.mark_others_stopped, engine, self.instance_id)
        handlers = {signal.SIGTERM: self.stopping.set, signal.SIGINT: self.stopping.set, signal.SIGHUP: self._on_sighup}
        with signals.handled(handlers):
            await self._start()
            await self.stopping.wait()
            return await self._shutdown()

    async def _start(self) -> None:
        d = self.settings.daemon
        await self._sync_sources()
        if not self.once:
            spread = await self.storage.attempt(spread_overdue, self.storage.engine, datetime.now(UTC),
                                                self.settings.health.interval, self.rng)
            if spread:
                log.info("spread %d overdue proxies over the next %g s", spread, self.settings.health.interval)
        if self._lock is not None:  # rule 3, after the spread, which leaves leased proxies alone
            taken = await self.storage.call(store.release_all_leases, self.storage.engine)
            if taken:
                log.warning("took back %d leases of a daemon that did not stop cleanly; those proxies are due now", taken)
        await self.monitor.selftest()
        self.side.start(self.writer.run(), "result writer")
        self.side.start(self.monitor.run(), "checker monitor")
        if self.once:
            if not self.monitor.status.ok:
                log.error("checker unavailable, no proxy judged: %s", self.monitor.status.reason)
            self.side.start(self._once(), "one round", forever=False)
            return
        self.side.start(self.dispatcher.run(), "dispatcher")
        self.side.start(self.notifications.sender.run(), "notification sender")
        self.periodic.start(d)
        if interval := watchdog_interval():
            stall = max(interval * 2, d.dispatch_interval * 5)
            self.side.start(watchdog(self.notifier, interval, lambda: self.dispatcher.last_progress, stall), "watchdog")
        if self.settings.http.enabled:
            await self._start_http()
        await self.publisher.refresh_counts()
        if self.started is not None:
            self.started()
        self.notifier.ready(self.publisher.status_text())
        log.info("ready: %s", self.publisher.status_text())
        if not d.sources:
            log.info("no [daemon].sources configured: add proxies with `proxycheck import FILE`; they are checked within seconds")

    async def _once(self) -> None:
        await self.dispatcher.run_once()
        self.stopping.set()

    async def _start_http(self) -> None:
        from ..http_api import HttpApi
        from ..worker import ProxyPool

        pool = ProxyPool(self.url, config=self.config_path, settings=self.settings.worker)
        self.http = HttpApi(self.settings, self.storage.reader, pool, self.metrics, self.monitor.state,
                            storage_problem=self.publisher.storage_problem)
        try:
            url = await self.http.start()
        except OSError as exc:
            raise ProxycheckError(f"cannot serve HTTP on [http].listen {self.settings.http.listen}: {exc.strerror or exc}") from None
        log.info("HTTP endpoint on %s", url)

    # -- SIGHUP ----------------------------------------------------------------------------------
    def _on_sighup(self) -> None:
        if self.side.running("reload"):
            log.info("SIGHUP: a reload is already running")
            return
        self.side.start(self.reload(), "reload", forever=False)

    async def reload(self) -> None:
        self.notifier.reloading()
        log.info("SIGHUP: reloading %s", self.config_path or self.settings.source_file or "the configuration")
        try:
            try:
                fresh = load_settings(self.config_path)
            except ProxycheckError as exc:
                log.error("configuration not reloaded, keeping the old one: %s", exc)
            else:
                self.apply(reloading.plan(self.settings, fresh))
            await self._sync_sources()
        finally:
            self.notifier.ready(self.publisher.status_text())

    def apply(self, plan: reloading.ReloadPlan) -> None:
        old, self.settings = self.settings, plan.settings
        if plan.new_checker:
            self.monitor.replace_checker(Checker(plan.settings))
        self.monitor.interval = plan.settings.daemon.heartbeat_interval
        self.periodic.reschedule(old.daemon, plan.settings.daemon)
        self.notifications.reconfigure(plan.settings.notify)
        plan.log()
        self.dispatcher.wake.set()

    # -- stop ------------------------------------------------------------------------------------
    async def _shutdown(self) -> int:
        """Stop in order (rule 2); the exit code."""
        started = time.monotonic()
        grace = self.settings.daemon.drain_grace
        deadline = started + grace + EXIT_BUDGET - 2.0  # a second for the rest of the exit
        log.info("stopping: waiting up to %g s for %d in-flight checks", grace, len(self.dispatcher.inflight))
        self.notifier.stopping()
        await self.periodic.stop()
        await self.side.cancel(keep=("result writer", "checker monitor"))
        await self.dispatcher.drain(grace)
        self.monitor.abandon_waiters()
        await self.side.cancel()
        if self.http is not None:
            await self.http.stop()
            self.http.pool.close()
        await self.writer.flush(max(0.5, deadline - 1.0 - time.monotonic()))
        try:
            await asyncio.wait_for(self.publisher.publish(stopped=True), timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.error("could not mark this instance stopped: the database did not answer in time")
        log.info("stopped after %d checks", self.checks_done)
        return 1 if self.side.failed or (self.writer.held and self.once) else 0


def run_daemon(settings: Settings, *, config_path: str | None, once: bool) -> int:
    """``proxycheck run``. Exits the process itself if a database call is still stuck (a locked
    SQLite file, an unanswering server): closing its connection at interpreter exit would wait
    for it, and the exit must come within ``drain_grace`` + 5 s."""
    gc_policy.tune()
    daemon = Daemon(settings, config_path=config_path, once=once, started=gc_policy.freeze_startup)
    code = loop.run(daemon.run())
    storage = getattr(daemon, "storage", None)
    if storage is not None and storage.threads.busy:
        log.warning("exiting without waiting for %d database calls still running", storage.threads.busy)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
