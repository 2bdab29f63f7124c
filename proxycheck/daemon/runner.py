"""The runner: the daemon's lifecycle. Open storage, start the side tasks and the periodic jobs,
stop them in order.

Rules:
1. Side tasks (dispatcher, writer, checker monitor, watchdog, a SIGHUP reload) are tracked, and
   the periodic jobs run on APScheduler (``periodic.py``). A side task that ends with an
   exception, or ends at all when it should run for ever, and a periodic job that raises, are
   bugs: logged with the traceback, and the daemon stops with exit code 1, so systemd restarts it
   visibly. Storage errors never get this far (``storage.py``).
2. Signals are handled only while the daemon runs (``signals.handled``). SIGTERM/SIGINT: stop
   claiming, let in-flight checks finish for ``drain_grace`` seconds, cancel the rest (their
   leases are released), write every completed result, exit 0 — within ``drain_grace`` + 5 s
   even when the database is down (what cannot be written is counted in the log). SIGHUP:
   ``reload.py``.
3. On SQLite the flock proves no other daemon runs: leases left in the file are a dead daemon's
   and are taken back at once, so its in-flight proxies are checked again right after a restart.
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
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from .. import store
from ..checker import Checker
from ..config import Settings
from ..errors import ProxycheckError, StorageError
from ..metrics import DaemonMetrics
from ..selftest import CheckerStatus
from ..sdnotify import Notifier, watchdog_interval
from ..store.engine import make_engine, masked_url
from ..store.migrate import check_at_head
from ..guard import GuardState
from ..store.guard import guard_states
from ..store.reports import feedback_summary, guard_rail
from ..store.schedule import spread_overdue
from ..verdict import ERROR_NAMES
from . import jobs, signals
from . import reload as reloading
from .dispatcher import Dispatcher
from .lock import SingleDaemonLock
from .monitor import CheckerMonitor
from .periodic import Periodic
from .storage import Storage
from .writer import Writer

if TYPE_CHECKING:
    from ..http_api import HttpApi

log = logging.getLogger("proxycheck.daemon")

EXIT_BUDGET = 5.0  # seconds past drain_grace by which a stopping daemon has exited


class Daemon:
    def __init__(self, settings: Settings, *, config_path: str | None = None, once: bool = False) -> None:
        self.settings = settings
        self.config_path = config_path
        self.once = once
        self.url = settings.resolved_database_url
        self.postgresql = make_url(self.url).get_backend_name() == "postgresql"
        self.instance_id = uuid.uuid4().hex
        self.notifier = Notifier()
        self.rng = random.Random()
        self.metrics = DaemonMetrics(self._summary_or_none, targets=lambda: [t.name for t in self.settings.targets.ban_targets],
                                     guards=self.guard_states)
        self.http: HttpApi | None = None
        self.counts: dict[str, int] = {}
        self.exit_code = 0
        self._lock: SingleDaemonLock | None = None
        self._tasks: set[asyncio.Task] = set()
        self._forever: set[asyncio.Task] = set()

    # -- what the demo and tests read ------------------------------------------------------------
    @property
    def status(self) -> CheckerStatus:
        return self.monitor.status

    @property
    def checks_done(self) -> int:
        return self.writer.checks_done

    @property
    def last_round_at(self):
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

    async def _run(self) -> int:
        self.stopping = asyncio.Event()
        self.monitor = CheckerMonitor(Checker(self.settings), self.settings.daemon.heartbeat_interval, self.publish)
        self.writer = Writer(self.storage, lambda: self.settings, self.instance_id, self.metrics)
        self.dispatcher = Dispatcher(self.storage, lambda: self.settings, self.instance_id, self.monitor, self.writer,
                                     self.metrics, self.stopping)
        self.periodic = Periodic(self, on_bug=self._bug)
        engine = self.storage.engine
        await self.storage.call(store.register_instance, engine, instance_id=self.instance_id,
                                hostname=socket.gethostname(), pid=os.getpid())
        log.info("proxycheck daemon %s starting on %s", self.instance_id[:8], masked_url(self.url))
        if self._lock is not None:
            taken = await self.storage.call(store.release_all_leases, engine)
            if taken:
                log.warning("took back %d leases of a daemon that did not stop cleanly; those proxies are due now", taken)
        handlers = {signal.SIGTERM: self.stopping.set, signal.SIGINT: self.stopping.set, signal.SIGHUP: self._on_sighup}
        with signals.handled(handlers):
            await self._start()
            await self.stopping.wait()
            await self._shutdown()
        return self.exit_code

    async def _start(self) -> None:
        d = self.settings.daemon
        await jobs.sync_sources(self)
        if not self.once:
            spread = await self.storage.attempt(spread_overdue, self.storage.engine, _now(), self.settings.health.interval,
                                                self.rng)
            if spread:
                log.info("spread %d overdue proxies over the next %g s", spread, self.settings.health.interval)
        await self.monitor.selftest()
        self._side(self.writer.run(), "result writer")
        self._side(self.monitor.run(), "checker monitor")
        if self.once:
            if not self.monitor.status.ok:
                log.error("checker unavailable, no proxy judged: %s", self.monitor.status.reason)
            self._side(self._once(), "one round", forever=False)
            return
        self._side(self.dispatcher.run(), "dispatcher")
        self.periodic.start()
        if watchdog_interval():
            self._side(self._watchdog(), "watchdog")
        if self.settings.http.enabled:
            await self._start_http()
        await self._refresh_counts()
        self.notifier.ready(self.status_text())
        log.info("ready: %s", self.status_text())
        if not d.sources:
            log.info("no [daemon].sources configured: add proxies with `proxycheck import FILE`; they are checked within seconds")

    async def _once(self) -> None:
        await self.dispatcher.run_once()
        self.stopping.set()

    # -- side tasks ------------------------------------------------------------------------------
    def _side(self, coro: Coroutine[Any, Any, Any], name: str, *, forever: bool = True) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        if forever:
            self._forever.add(task)
        task.add_done_callback(self._side_done)
        return task

    def _side_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        forever = task in self._forever
        self._forever.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None and (not forever or self.stopping.is_set()):
            return
        if exc is None:
            log.critical("%s ended although it should run until the daemon stops: a bug; stopping", task.get_name())
            self.exit_code = 1
            self.stopping.set()
        else:
            self._bug(task.get_name(), exc)

    def _bug(self, name: str, exc: BaseException) -> None:
        """A side task or a periodic job raised: log the traceback, stop, exit code 1."""
        log.critical("%s failed with a bug; stopping the daemon (exit code 1)", name, exc_info=exc)
        self.exit_code = 1
        self.stopping.set()

    def _on_sighup(self) -> None:
        if any(t.get_name() == "reload" for t in self._tasks):
            log.info("SIGHUP: a reload is already running")
            return
        self._side(self.reload(), "reload", forever=False)

    # -- stop ------------------------------------------------------------------------------------
    async def _shutdown(self) -> None:
        started = time.monotonic()
        grace = self.settings.daemon.drain_grace
        deadline = started + grace + EXIT_BUDGET - 2.0  # a second for the rest of the exit
        log.info("stopping: waiting up to %g s for %d in-flight checks", grace, len(self.dispatcher.inflight))
        self.notifier.stopping()
        keep = {t for t in self._tasks if t.get_name() in ("result writer", "checker monitor")}
        await self.periodic.stop()
        await _cancel(self._tasks - keep)
        await self.dispatcher.drain(grace)
        self.monitor.abandon_waiters()
        await _cancel(keep)
        if self.http is not None:
            await self.http.stop()
            self.http.pool.close()
        await self.writer.flush(max(0.5, deadline - 1.0 - time.monotonic()))
        if self.writer.held and self.once:
            self.exit_code = self.exit_code or 1
        try:
            await asyncio.wait_for(self.publish(stopped=True), timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.error("could not mark this instance stopped: the database did not answer in time")
        log.info("stopped after %d checks", self.checks_done)

    # -- publishing state ------------------------------------------------------------------------
    async def publish(self, stopped: bool = False) -> None:
        """The instance row (``status``) and sd_notify's STATUS, with the checker's state now."""
        st = self.monitor.status
        state, reason = self.monitor.state()
        await self.storage.attempt(store.heartbeat, self.storage.engine, self.instance_id, checker_state=state,
                                   checker_reason=reason or None, last_round_at=self.writer.last_round_at,
                                   own_ips=sorted(st.own_ips))
        if stopped:
            await self.storage.attempt(store.mark_stopped, self.storage.engine, self.instance_id)
            return
        if self.notifier.enabled:
            await self._refresh_counts()
        self.notifier.status(self.status_text())

    async def _refresh_counts(self) -> None:
        summary = await self.storage.attempt(store.status_summary, self.storage.reader)
        if summary is not None:
            self.counts = summary.counts

    def status_text(self) -> str:
        st = self.monitor.status
        _, reason = self.monitor.state()
        checker = (f"checker ok ({reason})" if reason else "checker ok") if st.ok else f"checker DEGRADED: {st.reason}"
        fleet = ", ".join(f"{n} {state}" for state, n in self.counts.items() if n)
        storage = self.storage_problem()
        return (f"{fleet or 'no proxies yet'}; {checker}; {self.checks_done} checks, "
                f"{len(self.dispatcher.inflight)} in flight" + (f"; storage FAILING: {storage}" if storage else ""))

    def storage_problem(self) -> str | None:
        """What /healthz and STATUS say while the database takes no writes (or no calls at all):
        held results first (writer.py rule 6), then any failing call (a claim, a heartbeat)."""
        return self.writer.write_problem() or self.storage.outage.problem()

    def _summary_or_none(self):
        """What a scrape reads from the database: the fleet and the worker reports."""
        try:
            summary = store.status_summary(self.storage.reader, top=len(ERROR_NAMES))  # every code, not the top 5
            return summary, feedback_summary(self.storage.reader, guard_rail(self.settings.worker))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the DB blinked
            log.warning("metrics: cannot read the fleet summary: %s", exc)
            return None

    def guard_states(self) -> dict[str, GuardState] | None:
        """Each captcha service's error budget (store/guard.py), for /metrics and /healthz; None
        when the database cannot say (a scrape must not fail because the DB blinked)."""
        try:
            return guard_states(self.storage.reader, self.settings)
        except Exception as exc:  # noqa: BLE001
            log.warning("guard: cannot read the error budgets: %s", exc)
            return None

    async def _watchdog(self) -> None:
        interval = watchdog_interval() or 10.0
        stall = max(interval * 2, self.settings.daemon.dispatch_interval * 5)
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.dispatcher.last_progress <= stall:
                self.notifier.watchdog()
            else:
                log.error("dispatch made no progress for %.0f s; not pinging the watchdog",
                          time.monotonic() - self.dispatcher.last_progress)

    async def _start_http(self) -> None:
        from ..http_api import HttpApi
        from ..worker import ProxyPool

        pool = ProxyPool(self.url, config=self.config_path, settings=self.settings.worker)
        self.http = HttpApi(self.settings, self.storage.reader, pool, self.metrics, self.monitor.state,
                            storage_problem=self.storage_problem)
        try:
            url = await self.http.start()
        except OSError as exc:
            raise ProxycheckError(f"cannot serve HTTP on [http].listen {self.settings.http.listen}: {exc.strerror or exc}") from None
        log.info("HTTP endpoint on %s", url)

    # -- SIGHUP ----------------------------------------------------------------------------------
    async def reload(self) -> None:
        await reloading.reload(self)

async def _cancel(tasks: set[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def run_daemon(settings: Settings, *, config_path: str | None, once: bool) -> int:
    """``proxycheck run``. Exits the process itself if a database call is still stuck (a locked
    SQLite file, an unanswering server): closing its connection at interpreter exit would wait
    for it, and the exit must come within ``drain_grace`` + 5 s."""
    daemon = Daemon(settings, config_path=config_path, once=once)
    code = asyncio.run(daemon.run())
    storage = getattr(daemon, "storage", None)
    if storage is not None and storage.threads.busy:
        log.warning("exiting without waiting for %d database calls still running", storage.threads.busy)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
