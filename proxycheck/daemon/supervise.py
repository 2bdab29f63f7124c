"""The daemon's side tasks (dispatcher, writer, checker monitor, watchdog, a SIGHUP reload), tracked.

Rules:
1. A side task that ends with an exception, or ends at all when it should run until the daemon
   stops (``forever``), is a bug: logged with its traceback, ``failed`` is set and ``stopping``
   is set, so the daemon stops with exit code 1 and systemd restarts it visibly. The periodic
   jobs report their bugs here too (``bug``, from ``periodic.py``).
2. A cancelled task is not a bug: shutdown cancels them (``cancel``), and in an order the runner
   chooses (the writer and the monitor outlive the dispatcher's drain).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("proxycheck.daemon")


class SideTasks:
    def __init__(self, stopping: asyncio.Event) -> None:
        self.stopping = stopping
        self.failed = False
        self._tasks: set[asyncio.Task] = set()
        self._forever: set[asyncio.Task] = set()

    def start(self, coro: Coroutine[Any, Any, Any], name: str, *, forever: bool = True) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        if forever:
            self._forever.add(task)
        task.add_done_callback(self._done)
        return task

    def running(self, name: str) -> bool:
        return any(t.get_name() == name for t in self._tasks)

    def bug(self, name: str, exc: BaseException) -> None:
        """A side task or a periodic job raised: log the traceback, stop, exit code 1."""
        log.critical("%s failed with a bug; stopping the daemon (exit code 1)", name, exc_info=exc)
        self.failed = True
        self.stopping.set()

    async def cancel(self, *, keep: tuple[str, ...] = ()) -> None:
        """Cancel every task but those named in ``keep``, and wait for them to end."""
        tasks = {t for t in self._tasks if t.get_name() not in keep}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task) -> None:
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
            self.failed = True
            self.stopping.set()
        else:
            self.bug(task.get_name(), exc)
