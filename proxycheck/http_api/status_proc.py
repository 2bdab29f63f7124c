"""``/status`` is rendered in a helper process, so its CPU never competes with the event loop.

Why a process and not a thread: building the full status is pure-Python work that grows with
the fleet (about 0.6 s of CPU for 10,000 proxies: rows to ``Proxy`` objects, masking, JSON). In
a thread it holds the GIL, and the event loop, which releases the GIL on every socket call,
waits up to a switch interval each time to get it back: checks slowed to a third under 50
``/status`` clients (bench/README.md, "status_load.py"). A process has its own GIL.

Rules:
1. One spawned helper (``spawn``: never ``fork`` a process with threads), started on the first
   ``/status`` (so a daemon nobody asks costs no extra memory; the first answer pays about a
   second of imports), with its own read-only engine on the daemon's database; it returns the
   finished JSON bytes.
2. It ignores SIGINT (a terminal's Ctrl-C goes to the daemon, which stops it) and runs at nice
   +10, so on a busy machine the daemon's checks get the CPU first. Lowering its own priority is
   the ``setpriority`` system call, which deploy/proxycheck.service allows by name after denying
   ``@resources`` (without ``CAP_SYS_NICE`` it can only lower, never raise). If it dies anyway
   the request gets 503 and the next one starts a new helper.
3. Where a process cannot be started (no ``/dev/shm``, a sandbox), rendering falls back to a
   thread, logged once.
4. The helper never outlives the daemon: stopping the endpoint waits (up to ``EXIT_WAIT``
   seconds) for it to exit, so systemd finds no process left to SIGKILL, and a helper whose
   daemon died without stopping it (SIGKILL) notices within ``PARENT_POLL`` seconds and exits.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..config import Worker
from ..errors import StorageError

log = logging.getLogger("proxycheck.http")

_ENGINES: dict[str, Any] = {}  # in the helper: one reader engine per database URL
EXIT_WAIT = 5.0  # seconds stop() waits for the helper to finish a render and exit (rule 4)
PARENT_POLL = 1.0  # seconds between the helper's looks at whether its daemon is still there


def render_status(url: str, worker: Worker, limit: int | None = None, after: str | None = None) -> bytes:
    """``proxycheck status --json`` as bytes (or one page of it, with ``next_after``)."""
    from ..status_view import as_json
    from ..store import list_proxies, make_engine, status_summary
    from ..store._rows import utcnow
    from ..store.reports import feedback_summary, guard_rail
    from ..store.worker_leases import lease_summary

    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = make_engine(url, writer=False)
    summary = status_summary(engine)
    rows = list_proxies(engine, after=after, limit=limit)
    shaped = as_json(summary, rows, feedback_summary(engine, guard_rail(worker)), leases=lease_summary(engine, now=utcnow()))
    if limit is not None:
        shaped["next_after"] = rows[-1].proxy.key if len(rows) == limit else None
    return json.dumps(shaped, default=str).encode()


def _helper_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(10)  # on a busy machine, checks come first (setpriority: rule 2)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent watch", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """Rule 4: a daemon that died without stopping us leaves us re-parented; follow it."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(0)


class StatusRenderer:
    """Runs ``render_status`` in the helper process (rules 1-3)."""

    def __init__(self, url: str, worker: Worker, fallback) -> None:
        self.url, self.worker = url, worker
        self._fallback = fallback  # async callable(fn, *args, **kwargs) running fn in a thread
        self._executor: ProcessPoolExecutor | None = None
        self._no_process = False

    def _pool(self) -> ProcessPoolExecutor | None:
        if self._executor is None and not self._no_process:
            try:
                self._executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=_helper_init)
            except (OSError, NotImplementedError) as exc:
                self._no_process = True
                log.warning("HTTP: cannot start the /status helper process (%s); rendering /status in a thread", exc)
        return self._executor

    async def render(self, **kwargs: Any) -> bytes:
        call = functools.partial(render_status, self.url, self.worker, **kwargs)
        pool = self._pool()
        if pool is None:
            return await self._fallback(call)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        except BrokenProcessPool:
            self._executor = None
            raise StorageError("the /status helper process exited; the next request starts a new one") from None

    async def close(self) -> None:
        """Stop the helper and wait for it to exit (rule 4): a render in progress finishes."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        stopping = asyncio.create_task(asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True))
        done, _ = await asyncio.wait({stopping}, timeout=EXIT_WAIT)
        if not done:
            log.warning("HTTP: the /status helper did not exit within %g s; it exits when the daemon does", EXIT_WAIT)
