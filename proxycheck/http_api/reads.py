"""Reads that never starve the daemon: their own threads, a bound on heavy ones, shared builds.

Rules:
1. Every database call of the endpoint runs in the endpoint's own small thread pool, never in
   the event loop and never in the loop's default executor: the daemon's dispatch and writer use
   that one, and a queue of HTTP reads in front of them was what stopped checks (issue 9).
2. *Heavy* reads (their cost grows with the fleet: ``/status``, ``/proxies/healthy``,
   ``/metrics``) hold one of ``slots`` permits (default 2) for the whole call, JSON rendering
   included. A request that waits longer than ``wait`` seconds for a permit gets 503 with
   ``Retry-After``: load is shed, never queued without bound. Memory is therefore bounded by
   ``slots`` responses in the making plus what is being sent.
3. A ``Shared`` build (the full ``/status``) runs once for every request that arrives while it
   runs, and its bytes are reused for ``max(min_age, factor × build time)`` seconds, so however
   many clients poll, the daemon spends at most about 1/factor of one thread on it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every heavy-read permit stayed taken for ``wait`` seconds: answer 503 + Retry-After."""


class Reads:
    """The endpoint's threads (rule 1) and heavy-read permits (rule 2)."""

    def __init__(self, *, slots: int = 2, wait: float = 2.0, threads: int = 4) -> None:
        self.slots, self.wait = slots, wait
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="proxycheck-http")
        self._permits: asyncio.Semaphore | None = None

    async def light(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def heavy(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.heavy_async(self.light(fn, *args, **kwargs))

    async def heavy_async(self, work: Awaitable[T]) -> T:
        """Await ``work`` (a coroutine, not yet started) holding a heavy-read permit."""
        if self._permits is None:
            self._permits = asyncio.Semaphore(self.slots)
        try:
            async with asyncio.timeout(self.wait):
                await self._permits.acquire()
        except TimeoutError:
            if asyncio.iscoroutine(work):
                work.close()
            raise Busy(f"{self.slots} heavy reads already running for {self.wait:g} s") from None
        try:
            return await work
        finally:
            self._permits.release()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Shared:
    """One build at a time, shared by concurrent callers and reused while fresh (rule 3)."""

    def __init__(self, build: Callable[[], Any], *, min_age: float = 1.0, factor: float = 4.0) -> None:
        self._build, self.min_age, self.factor = build, min_age, factor
        self._value: Any = None
        self._built_at = 0.0
        self._fresh_for = 0.0
        self._task: asyncio.Task | None = None

    def age(self) -> float:
        return time.monotonic() - self._built_at

    async def get(self) -> Any:
        if self._value is not None and self.age() < self._fresh_for:
            return self._value
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shared read")
            self._task.add_done_callback(_retrieve)  # every waiter may have hung up
        # shield: one client hanging up must not cancel the build the others wait for
        return await asyncio.shield(self._task)

    async def _run(self) -> Any:
        began = time.monotonic()
        try:
            value = await self._build()
        finally:
            self._task = None
        self._value, self._built_at = value, time.monotonic()
        self._fresh_for = max(self.min_age, self.factor * (self._built_at - began))
        return value


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
