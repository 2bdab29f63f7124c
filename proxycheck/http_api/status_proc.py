"""``/status`` is rendered in a helper process, so its CPU never competes with the event loop.

Why a process and not a thread: building the full status is pure-Python work that grows with
the fleet (about 0.6 s of CPU for 10,000 proxies: rows to ``Proxy`` objects, masking, JSON). In
a thread it holds the GIL, and the event loop, which releases the GIL on every socket call,
waits up to a switch interval each time to get it back: checks slowed to a third under 50
``/status`` clients (bench/README.md, "status_load.py"). A process has its own GIL.

Rules:
1. One helper, ``python -c '...status_proc import main; main()'`` (a plain subprocess: never ``fork``
   a process with threads, and no ``multiprocessing``, whose resource-tracker process would
   outlive the daemon by a moment, long enough for systemd to SIGKILL it), started on the first
   ``/status`` (so a daemon nobody asks costs no extra memory; the first answer pays about a
   second of imports), with its own read-only engine on the daemon's database. Requests and
   answers are pickles framed by their length on its stdin and stdout, one at a time; it
   returns the finished JSON bytes, or the exception the render raised.
2. It ignores SIGINT (a terminal's Ctrl-C goes to the daemon, which stops it) and runs at nice
   +10, so on a busy machine the daemon's checks get the CPU first. Lowering its own priority is
   the ``setpriority`` system call, which deploy/proxycheck.service allows by name after denying
   ``@resources`` (without ``CAP_SYS_NICE`` it can only lower, never raise). If it dies anyway
   (or a request is abandoned half-way) the request gets 503 and the next one starts a new
   helper.
3. Where a process cannot be started, rendering falls back to a thread, logged once.
4. The helper never outlives the daemon: it exits when its stdin reaches end of file. Stopping
   the endpoint closes that pipe and waits up to ``EXIT_WAIT`` seconds for the render in
   progress, so systemd finds no process left to SIGKILL; a daemon that died (SIGKILL) closed
   the pipe too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import pickle
import signal
import struct
import sys
from typing import IO, Any

from ..config import Guard, Settings, Worker
from ..errors import StorageError

log = logging.getLogger("proxycheck.http")

_ENGINES: dict[str, Any] = {}  # in the helper: one reader engine per database URL
EXIT_WAIT = 5.0  # seconds stop() waits for the helper to finish a render and exit (rule 4)
_SIZE = struct.Struct(">Q")  # the length in front of every pickle (rule 1)
HELPER_EXITED = "the /status helper process exited; the next request starts a new one"


def render_status(url: str, worker: Worker, limit: int | None = None, after: str | None = None,
                  guard: Guard | None = None, country: str | None = None, asn: int | None = None) -> bytes:
    """``proxycheck status --json`` as bytes (or one page of it, with ``next_after``; ``country``
    and ``asn``: only proxies whose exit was observed there, as ``status --country/--asn``)."""
    from ..status_view import as_json
    from ..store import list_proxies, make_engine, status_summary
    from ..store._rows import utcnow
    from ..store.reports import feedback_summary, guard_rail
    from ..store.guard import guard_states, held_subnets
    from ..store.worker_leases import lease_summary

    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = make_engine(url, writer=False)
    summary = status_summary(engine)
    rows = list_proxies(engine, after=after, limit=limit, country=country, asn=asn, vantages=True)
    shaped = as_json(summary, rows, feedback_summary(engine, guard_rail(worker)), leases=lease_summary(engine, now=utcnow()),
                     guards=guard_states(engine, Settings(guard=guard or Guard())), held=held_subnets(engine))
    if limit is not None:
        shaped["next_after"] = rows[-1].proxy.key if len(rows) == limit else None
    return json.dumps(shaped, default=str).encode()


def _helper_main(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The helper's loop (rules 1, 2 and 4): a request in, an answer out, until end of file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(10)  # on a busy machine, checks come first (setpriority: rule 2)
    while True:
        head = stdin.read(_SIZE.size)
        if len(head) < _SIZE.size:
            return  # the daemon closed the pipe: it is stopping, or it died
        url, worker, kwargs = pickle.loads(stdin.read(_SIZE.unpack(head)[0]))
        try:
            answer = pickle.dumps(("ok", render_status(url, worker, **kwargs)))
        except Exception as exc:  # noqa: BLE001 - the daemon raises it as if rendered there
            try:
                answer = pickle.dumps(("error", exc))
                pickle.loads(answer)  # some exceptions pickle but do not unpickle
            except Exception:  # noqa: BLE001 - an exception that cannot cross
                answer = pickle.dumps(("error", StorageError(f"{type(exc).__name__}: {exc}")))
        try:
            stdout.write(_SIZE.pack(len(answer)) + answer)
            stdout.flush()
        except BrokenPipeError:
            return


class StatusRenderer:
    """Runs ``render_status`` in the helper process (rules 1-4)."""

    def __init__(self, url: str, worker: Worker, fallback, guard: Guard | None = None) -> None:
        self.url, self.worker, self.guard = url, worker, guard or Guard()
        self._fallback = fallback  # async callable(fn, *args, **kwargs) running fn in a thread
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._no_process = False

    async def _helper(self) -> asyncio.subprocess.Process | None:
        if self._proc is None and not self._no_process:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", f"from {__name__} import main; main()", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            except OSError as exc:
                self._no_process = True
                log.warning("HTTP: cannot start the /status helper process (%s); rendering /status in a thread", exc)
        return self._proc

    async def render(self, **kwargs: Any) -> bytes:
        kwargs = {**kwargs, "guard": self.guard}
        async with self._lock:
            proc = await self._helper()
            if proc is None:
                return await self._fallback(functools.partial(render_status, self.url, self.worker, **kwargs))
            assert proc.stdin is not None and proc.stdout is not None
            request = pickle.dumps((self.url, self.worker, kwargs))
            done = False
            try:
                proc.stdin.write(_SIZE.pack(len(request)) + request)
                await proc.stdin.drain()
                size = _SIZE.unpack(await proc.stdout.readexactly(_SIZE.size))[0]
                status, value = pickle.loads(await proc.stdout.readexactly(size))
                done = True
            except (OSError, asyncio.IncompleteReadError):
                raise StorageError(HELPER_EXITED) from None
            finally:
                if not done:  # dead, or abandoned half-way (its answer would answer the next request)
                    self._proc = None
                    await _end(proc)
        if status == "error":
            raise value
        return value

    async def close(self) -> None:
        """Rule 4: end of file on the helper's stdin, then wait for it to exit."""
        async with self._lock:  # a render in progress finishes first
            proc, self._proc = self._proc, None
            if proc is not None:
                await _end(proc)


async def _end(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), EXIT_WAIT)
    except TimeoutError:
        log.warning("HTTP: the /status helper did not exit within %g s of its pipe closing; killing it", EXIT_WAIT)
        proc.kill()
        await proc.wait()


def main() -> None:
    """The helper process (rule 1); its stdout carries only answers, anything printed goes to stderr."""
    out, sys.stdout = sys.stdout.buffer, sys.stderr
    _helper_main(sys.stdin.buffer, out)
