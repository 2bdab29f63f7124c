"""What the daemon tells the outside about itself: the instance row, sd_notify's STATUS, and
the watchdog's pings.

Rules:
1. ``publish`` writes the instance row (``proxycheck status`` reads it: the checker's state and
   reason, the last round, the checker's own IPs) and sends STATUS with the fleet's counts. It
   runs at every heartbeat (``jobs.py``) and at every change of the checker's state
   (``monitor.py``); a storage error waits for the next one. At stop it marks the row stopped.
2. The fleet's counts are read for STATUS only when systemd listens (``Notifier.enabled``), and
   once before READY=1, so the ready line has real numbers. STATUS names a failing database
   (``storage_problem``, also what ``/healthz`` says). The read's cost grows with the fleet, so
   it waits ``1 / COUNTS_SHARE`` times as long as the last one took (``Paced``): at 100,000
   proxies on SQLite it takes ~45 ms and comes at every heartbeat; a read of 0.5 s (a million
   proxies on a busy PostgreSQL) comes every 50 s. Between reads STATUS repeats the last counts.
3. The watchdog is pinged only while the dispatcher makes progress: a loop stalled for
   ``stall_after`` seconds stops the pings, and systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .. import store
from ..sdnotify import Notifier
from .monitor import CheckerMonitor
from .storage import Storage
from .writer import Writer

log = logging.getLogger("proxycheck.daemon")

COUNTS_SHARE = 0.01  # rule 2: the fleet's counts for STATUS take at most 1 % of the time


class Paced:
    """A costly read done again only after ``1 / share`` times as long as it last took (rule 2)."""

    def __init__(self, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.share, self.clock = share, clock
        self._due = float("-inf")

    def due(self) -> bool:
        return self.clock() >= self._due

    def took(self, started: float) -> None:
        """The read that began at ``started`` (``clock()``) is done."""
        now = self.clock()
        self._due = now + (now - started) * (1 / self.share - 1)


class Publisher:
    def __init__(self, storage: Storage, instance_id: str, notifier: Notifier, monitor: CheckerMonitor, writer: Writer,
                 in_flight: Callable[[], int], heartbeat_interval: Callable[[], float]) -> None:
        self.storage = storage
        self.heartbeat_interval = heartbeat_interval  # stored with the row: liveness is judged by it
        self.instance_id = instance_id
        self.notifier = notifier
        self.monitor = monitor
        self.writer = writer
        self.in_flight = in_flight
        self.counts: dict[str, int] = {}
        self.counts_paced = Paced(COUNTS_SHARE)

    async def publish(self, stopped: bool = False) -> None:
        """The instance row (``status``) and sd_notify's STATUS, with the checker's state now."""
        st = self.monitor.status
        state, reason = self.monitor.state()
        await self.storage.attempt(store.heartbeat, self.storage.engine, self.instance_id, checker_state=state,
                                   checker_reason=reason or None, last_round_at=self.writer.last_round_at,
                                   own_ips=sorted(st.own_ips), heartbeat_interval=self.heartbeat_interval())
        if stopped:
            await self.storage.attempt(store.mark_stopped, self.storage.engine, self.instance_id)
            return
        if self.notifier.enabled:
            await self.refresh_counts()
        self.notifier.status(self.status_text())

    async def refresh_counts(self) -> None:
        if not self.counts_paced.due():
            return
        started = self.counts_paced.clock()
        summary = await self.storage.attempt(store.status_summary, self.storage.reader)
        self.counts_paced.took(started)
        if summary is not None:
            self.counts = summary.counts

    def status_text(self) -> str:
        st = self.monitor.status
        _, reason = self.monitor.state()
        checker = (f"checker ok ({reason})" if reason else "checker ok") if st.ok else f"checker DEGRADED: {st.reason}"
        fleet = ", ".join(f"{n} {state}" for state, n in self.counts.items() if n)
        storage = self.storage_problem()
        return (f"{fleet or 'no proxies yet'}; {checker}; {self.writer.checks_done} checks, "
                f"{self.in_flight()} in flight" + (f"; storage FAILING: {storage}" if storage else ""))

    def storage_problem(self) -> str | None:
        """What /healthz and STATUS say while the database takes no writes (or no calls at all):
        held results first (writer.py rule 6), then any failing call (a claim, a heartbeat)."""
        return self.writer.write_problem() or self.storage.outage.problem()


async def watchdog(notifier: Notifier, interval: float, last_progress: Callable[[], float], stall_after: float) -> None:
    """Side task: WATCHDOG=1 every ``interval`` seconds while dispatch made progress within ``stall_after``."""
    while True:
        await asyncio.sleep(interval)
        if time.monotonic() - last_progress() <= stall_after:
            notifier.watchdog()
        else:
            log.error("dispatch made no progress for %.0f s; not pinging the watchdog", time.monotonic() - last_progress())
