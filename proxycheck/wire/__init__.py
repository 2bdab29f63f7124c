"""The probes' own HTTP/1.1 client: asyncio streams, httptools, python-socks, ``ssl``.

Why not httpx on the probe path: a full check through httpx cost 3-4x the CPU of the same
traffic on bare asyncio streams, and the time went to httpx, httpcore, anyio and h11, not to our
code (bench/README.md). This package keeps only what a probe needs: GET through an HTTP(S) or
SOCKS proxy, connections reused per origin, a deadline on every phase, errors typed by phase
(``errors.py``) and per-phase timings. httpx stays where it serves users (the worker code).

Modules: ``errors`` (the error tree), ``http1`` (request bytes, response framing with
httptools), ``socks`` (SOCKS handshakes with python-socks' messages), ``session`` (connections,
deadlines, timings).
"""

from .errors import WireError
from .http1 import Response
from .session import Session, Timeouts, parse_target

__all__ = ["Response", "Session", "Timeouts", "WireError", "parse_target"]
