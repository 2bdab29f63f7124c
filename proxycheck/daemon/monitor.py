"""Is the checker able to judge proxies right now? A heartbeat, and a barrier before every blame.

Rules (never blame a proxy for our own trouble, at every moment):
1. A proxy *failure* is stored only if the checker is known good for the failure's window: a
   self-test (``Checker.preflight``: the judge and every target, fetched directly) that *started
   after* the check finished has passed, and no heartbeat or self-test failed since the check
   started. Anything less and the failure is rescheduled as ``checker_unavailable``: no state
   changes, no history row.
2. Confirmation is a barrier shared by every failure in flight: failures wait, and one self-test
   confirms all that finished before it started. Self-tests for confirmation start at most once
   per ``[daemon].heartbeat_interval`` (a fleet with many failures costs one self-test per
   interval, not one per failure). Successes need no confirmation.
3. Heartbeat: every ``heartbeat_interval`` the judge is fetched directly (one cheap request; the
   full self-test also fetches the ban target, and hammering that from our own address would get
   us banned). A failed heartbeat voids every failure in flight and runs a full self-test at
   once, which decides the checker's state.
   While degraded, the full self-test is repeated, first after ``DEGRADED_RETRY`` seconds and
   then twice as long each time up to the interval: the judge coming back resumes checking by
   itself, within about a second after a short outage (the issue-16 flapping judge), while a
   long one costs one self-test per interval.
4. Every change of state is published at once (``on_change``: the instance row that ``status``
   reads, and sd_notify's STATUS); the HTTP endpoint reads ``state()``. A degraded checker is
   repeated in the log every ``DEGRADED_LOG_EVERY`` seconds with how long and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from ..checker import Checker
from ..selftest import CheckerStatus, direct_session
from ..wire import WireError

log = logging.getLogger("proxycheck.daemon")

DEGRADED_LOG_EVERY = 60.0
DEGRADED_RETRY = 0.5  # seconds to the first repeated self-test while degraded (rule 3)
FIX = ("run `proxycheck doctor` to see which target fails; without Internet access, run your own judge "
       "(`proxycheck judge`) and point [targets] at it. Proxies keep their states meanwhile")


class CheckerMonitor:
    def __init__(self, checker: Checker, interval: float, on_change: Callable[[], Awaitable[None]]) -> None:
        self.checker = checker
        self.interval = interval
        self.on_change = on_change
        self.status = CheckerStatus(False, "not checked yet")
        self.last_bad_at = -math.inf  # monotonic time of the latest failed heartbeat or self-test
        self.degraded_since: float | None = None
        self._waiters: list[tuple[float, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last_selftest = -math.inf
        self._next_beat = 0.0
        self._last_degraded_log = -math.inf
        self._failed_selftests = 0  # in a row: the repeat's backoff (rule 3)

    # -- what others ask -------------------------------------------------------------------------
    def state(self) -> tuple[str, str]:
        """("ok"|"degraded", reason): what the HTTP endpoint's /healthz shows. While OK, the reason
        names the targets that are down or cannot judge although the checker still works (a spare
        judge, a ban target that answers everyone alike: ``Checker.notes``), else it is empty."""
        if not self.status.ok:
            return self.status.state, self.status.reason
        return "ok", "; ".join(sorted(self.checker.notes.values()))

    async def confirm(self, check_started: float) -> bool:
        """Wait for the next self-test; True iff it passed and nothing failed since ``check_started``
        (a ``time.monotonic()`` taken before the check began)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((check_started, future))
        self._wake.set()
        return await future

    def replace_checker(self, checker: Checker) -> None:
        """SIGHUP: new targets or timeouts. The next beat runs a full self-test with them."""
        self.checker = checker
        self._next_beat = 0.0
        self._wake.set()

    def abandon_waiters(self) -> None:
        """Shutdown: failures still waiting are not confirmed (they are rescheduled)."""
        waiters, self._waiters = self._waiters, []
        for _, future in waiters:
            if not future.done():
                future.set_result(False)

    # -- self-tests ------------------------------------------------------------------------------
    async def selftest(self) -> CheckerStatus:
        """Run the full self-test now; settle every confirmation waiting before it started."""
        async with self._lock:
            waiters, self._waiters = self._waiters, []
            self._last_selftest = time.monotonic()
            self._next_beat = self._last_selftest + self.interval
            try:
                status = await self.checker.preflight()
            except asyncio.CancelledError:
                self._waiters[:0] = waiters  # shutdown: abandon_waiters() settles them
                raise
            except Exception as exc:  # noqa: BLE001 - a broken self-test means degraded, never a blame
                log.exception("checker self-test failed inside proxycheck")
                status = CheckerStatus(False, f"self-test failed: {type(exc).__name__}: {exc}")
            await self._record(status)
            if status.ok:
                self._failed_selftests = 0
            else:
                self._next_beat = self._last_selftest + min(self.interval, DEGRADED_RETRY * 2 ** self._failed_selftests)
                self._failed_selftests += 1
            for check_started, future in waiters:
                if not future.done():
                    future.set_result(status.ok and self.last_bad_at < check_started)
            return status

    async def beat(self) -> None:
        """The heartbeat: one direct request to the judge (a full self-test while degraded)."""
        if not self.status.ok:
            await self.selftest()
            return
        self._next_beat = time.monotonic() + self.interval
        url = (self.checker.judges or self.checker.settings.targets.judges)[0]  # a judge that is up
        try:
            async with direct_session(self.checker.settings, self.checker.ssl_context) as session:
                response = await session.get(url)
            if response.status == 200:
                return
            why = f"judge {url} answered {response.status} directly"
        except (WireError, OSError) as exc:
            why = f"cannot reach the judge {url} directly: {_why(exc)}"
        # Every failure in flight now overlaps trouble of ours; the self-test says how the checker is.
        self.last_bad_at = time.monotonic()
        status = await self.selftest()
        if status.ok:
            log.info("a heartbeat failed (%s) but the self-test right after passed", why)

    async def run(self) -> None:
        """Side task: heartbeats, confirmation self-tests, and the degraded reminder."""
        while True:
            now = time.monotonic()
            if self._waiters:
                wait = self._last_selftest + self.interval - now
                if wait <= 0:
                    await self.selftest()
                    continue
            else:
                wait = self._next_beat - now
                if wait <= 0:
                    await self.beat()
                    continue
            self._remind(now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, DEGRADED_LOG_EVERY))

    # -- state -----------------------------------------------------------------------------------
    async def _record(self, status: CheckerStatus) -> None:
        now = time.monotonic()
        if not status.ok:
            self.last_bad_at = now
        changed = status.ok != self.status.ok or status.reason != self.status.reason
        if status.ok and not self.status.ok:
            down = f" after {_duration(now - self.degraded_since)} degraded" if self.degraded_since else ""
            log.info("checker OK%s; own IPs: %s", down, ", ".join(sorted(status.own_ips)) or "none")
            self.degraded_since = None
        elif not status.ok and changed:
            if self.degraded_since is None or self.status.ok:
                self.degraded_since = now
            log.warning("checker degraded, no proxy will be judged: %s. To fix: %s", status.reason, FIX)
            self._last_degraded_log = now
        self.status = status
        if changed:
            await self.on_change()

    def _remind(self, now: float) -> None:
        if self.status.ok or self.degraded_since is None or now - self._last_degraded_log < DEGRADED_LOG_EVERY:
            return
        self._last_degraded_log = now
        log.warning("checker degraded for %s, no proxy judged meanwhile: %s. To fix: %s",
                    _duration(now - self.degraded_since), self.status.reason, FIX)


def _why(exc: BaseException) -> str:
    return f"{exc}" if str(exc) else type(exc).__name__


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes} min {seconds} s"
    return f"{minutes // 60} h {minutes % 60} min"
