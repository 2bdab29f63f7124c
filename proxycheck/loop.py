"""The event loop the probes run on: uvloop's (libuv; its transports and TLS are Cython).

Rule: every command that runs probes (``run``, ``check``, ``doctor``, ``demo``) runs its coroutine
with ``run()``. Measured on the live bench (``bench/daemon_bench.py --live``, 1,000 squids, 200
checks/s asked, two runs each, alternating): 2.43 and 2.60 ms of daemon CPU per stored check on
uvloop against 3.01 and 2.82 on asyncio's own loop, the same code otherwise. Our code depends only
on the asyncio API (streams, ``start_tls``, ``asyncio.timeout``, signal handlers), so a test run
on either loop proves the same logic; the world tests run the daemon through the CLI, on this one.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a uvloop event loop (``asyncio.Runner`` with uvloop's factory)."""
    return uvloop.run(main)


__all__ = ["run"]
