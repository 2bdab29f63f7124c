"""The daemon's one door to the database: storage calls in threads, storage errors told apart.

Rules:
1. A *storage error* is the database's trouble, not ours: SQLAlchemy/DBAPI errors (server down,
   connection lost, locked, disk full), our ``StorageError``, and OS errors of the disk. The
   caller retries or skips it and logs one line.
2. Anything else raised by a storage call is a bug. It propagates, with its traceback, and stops
   the daemon with a non-zero exit (``runner.py``), so systemd restarts it visibly.
3. Calls run on a few *daemon* threads of our own instead of asyncio's default executor: a call
   stuck on a dead database (SQLite's busy timeout, a TCP connect) must never hold the process's
   exit, which has to come within ``drain_grace`` + 5 s of SIGTERM. An abandoned call is left to
   finish (or die with the process); the leases it held expire or are reclaimed.
4. A caller cancelled while its call runs (SIGTERM) gets ``CancelledError`` and nothing else:
   no traceback is logged for it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc

from ..errors import StorageError

log = logging.getLogger("proxycheck.daemon")
T = TypeVar("T")

# The disk's own trouble; any other OSError from a storage call is unexpected.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT}


def is_storage_error(exc: BaseException) -> bool:
    """True for the database's trouble (retry or skip), False for a bug (stop the daemon)."""
    if isinstance(exc, StorageError | sa_exc.DBAPIError | sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS


def describe(exc: BaseException) -> str:
    """One line for the log (engines use ``hide_parameters``: no proxy password in it)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class StorageThreads:
    """A fixed set of daemon threads running storage calls in order of submission."""

    def __init__(self, workers: int = 4) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future, asyncio.AbstractEventLoop] | None] = (
            queue.SimpleQueue()
        )
        self._busy = 0
        self._count = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"proxycheck-storage-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((lambda: fn(*args, **kwargs), future, loop))
        return await future

    @property
    def busy(self) -> int:
        """Calls running right now (a stuck one counts until it returns)."""
        return self._busy

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future, loop = job
            if future.cancelled():
                continue
            with self._count:
                self._busy += 1
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                _settle(loop, future, exc=exc)
            else:
                _settle(loop, future, result=result)
            finally:
                with self._count:
                    self._busy -= 1

    def close(self) -> None:
        """Let idle threads end; a thread stuck in a call is a daemon thread and never waited for."""
        for _ in self._threads:
            self._jobs.put(None)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future, *, result: Any = None,
            exc: BaseException | None = None) -> None:
    def settle() -> None:
        if future.done():
            return  # the caller was cancelled meanwhile
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop is closed: the daemon has exited and nobody waits for this answer


class Storage:
    """The writer and reader engines and the threads that use them."""

    def __init__(self, engine: Any, reader: Any) -> None:
        self.engine, self.reader = engine, reader
        self.threads = StorageThreads()
        self.outage = Outage()

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a storage call; every exception propagates (the caller decides what to retry)."""
        return await self.threads.call(fn, *args, **kwargs)

    async def attempt(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T | None:
        """Run a storage call whose failure can wait for its next turn (a sync, a heartbeat):
        a storage error is logged and gives None; a bug propagates."""
        name = getattr(fn, "__name__", str(fn))
        try:
            result = await self.threads.call(fn, *args, **kwargs)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self.outage.failed(name, exc)
            return None
        self.outage.worked(name)
        return result

    def close(self) -> None:
        self.threads.close()
        self.engine.dispose()
        self.reader.dispose()


class Outage:
    """Logs a failing storage call once, then every ``REPEAT`` seconds while it keeps failing,
    and once when it works again: a database outage is a few lines, not one per dispatch. Every
    caller that retries a storage call logs through one (``Storage.attempt``, the writer); a
    ``note`` says what waits meanwhile. ``problem()`` says which calls fail right now (a claim
    on a full disk, a heartbeat)."""

    REPEAT = 30.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failing: dict[str, tuple[float, float, int]] = {}  # name -> (since, last logged, failures)

    def failed(self, name: str, exc: BaseException, note: str = "") -> None:
        now = self.clock()
        since, logged, count = self._failing.get(name, (now, -self.REPEAT, 0))
        if now - logged >= self.REPEAT:
            again = f"failing for {now - since:.0f} s, {count + 1} attempts" if count else ""
            log.error("database call %s failed%s: %s", name, _parenthesis(again, note), describe(exc))
            logged = now
        self._failing[name] = (since, logged, count + 1)

    def problem(self) -> str | None:
        """None when no call is failing; else one sentence for /healthz and STATUS (no path, no
        URL: the log has the database's own words)."""
        if not self._failing:
            return None
        since = min(since for since, _, _ in self._failing.values())
        return f"database calls failing for {self.clock() - since:.0f} s ({', '.join(sorted(self._failing))})"

    def failing_since(self, name: str) -> float | None:
        """When ``name`` started failing (the clock's time), None while it works."""
        failing = self._failing.get(name)
        return failing[0] if failing else None

    def worked(self, name: str, note: str = "") -> None:
        if name in self._failing:
            since, _, count = self._failing.pop(name)
            log.info("database call %s works again after %.0f s%s", name, self.clock() - since,
                     _parenthesis(f"{count} failed attempts", note))


def _parenthesis(*parts: str) -> str:
    text = "; ".join(p for p in parts if p)
    return f" ({text})" if text else ""
