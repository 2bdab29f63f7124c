"""Child processes of a loopback world, and the one ``free_port``: start, wait, stop by PID, reap.

Used by the test world (real proxy software: squid, tinyproxy, microsocks, pproxy), the benches
(squid, the judge, the daemon under measurement) and anything else that runs a helper process.

Rules:
1. Every child runs as our direct child, its stdout and stderr in a log file; we signal exactly
   the PIDs we started (never by name) and always reap them: ``stop()`` is SIGTERM, a grace
   period, then SIGKILL; a child is never left a zombie or an orphan.
2. Reaping is ``wait4``, so the child's own resource usage (CPU seconds, peak RSS) is known
   after it exits, never mixed with other children's (``Child.usage``).
3. A child that exits or does not listen within its start-up budget is a ``WorldError`` whose
   message carries the tail of its logs: "squid-main did not start" alone helps nobody.
4. ``free_port(host)`` is a port nobody on ``host`` is bound to right now. Each world address
   (127.x.y.z) belongs to one world, so nothing else takes it before the child binds it.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path


class WorldError(RuntimeError):
    """A loopback world could not be built; the message says which part and why."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody on ``host`` is bound to right now (rule 4)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts a TCP connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, indented, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"    ({path} does not exist)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or f"    ({path} is empty)"


@dataclass
class Child:
    """One child process, and the addresses it must listen on before it counts as started."""

    name: str
    argv: list[str]
    log: Path  # stdout and stderr
    listens: list[tuple[str, int]] = field(default_factory=list)
    extra_logs: list[Path] = field(default_factory=list)  # e.g. squid's cache.log
    env: dict[str, str] | None = None
    cwd: Path | None = None
    preexec: Callable[[], None] | None = None  # runs in the child before exec (affinity, rlimits)
    proc: subprocess.Popen[bytes] | None = None
    usage: resource.struct_rusage | None = None  # set once reaped (rule 2)
    started: float = 0.0  # time.monotonic() at spawn

    def spawn(self) -> Child:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=self.cwd, preexec_fn=self.preexec)
        self.started = time.monotonic()
        return self

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def running(self) -> bool:
        """True while the child has not exited; reaps it (with its usage) when it has."""
        if self.proc is None or self.proc.returncode is not None:
            return False
        return self._wait4(os.WNOHANG) is None

    def check_alive(self) -> None:
        """Raise ``WorldError`` with the logs when the child has exited."""
        if self.proc is not None and not self.running():
            raise WorldError(f"{self.name} exited with status {self.proc.returncode}\n{self.logs()}")

    def wait_listening(self, deadline: float) -> None:
        """Return once every address in ``listens`` accepts; ``WorldError`` at ``deadline`` (monotonic)."""
        pending = list(self.listens)
        while pending:
            self.check_alive()
            if accepts(*pending[0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                where = ", ".join(f"{h}:{p}" for h, p in pending)
                raise WorldError(f"{self.name} did not accept connections on {where} in time\n{self.logs()}")
            time.sleep(0.02)

    def logs(self) -> str:
        return "\n".join(f"  {path}:\n{tail(path)}" for path in [self.log, *self.extra_logs])

    def signal(self, sig: int) -> None:
        """Send ``sig`` to our child, by PID, unless it has exited (and been reaped) already."""
        if self.running():
            assert self.proc is not None
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int:
        """Reap the child (rule 2) and return its exit code; ``TimeoutError`` if it still runs."""
        assert self.proc is not None, f"{self.name} was never spawned"
        end = None if timeout is None else time.monotonic() + timeout
        while self.proc.returncode is None:
            if self._wait4(os.WNOHANG) is not None:
                break
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"{self.name} still running after {timeout:g} s")
            time.sleep(0.02)
        return self.proc.returncode

    def reap(self, deadline: float) -> int | None:
        """Wait until ``deadline`` (monotonic), then SIGKILL and wait; the exit code (None if never spawned)."""
        if self.proc is None:
            return None
        try:
            return self.wait(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return self.wait(5)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaped (rule 1)."""
        self.signal(signal.SIGTERM)
        return self.reap(time.monotonic() + grace)

    def _wait4(self, options: int) -> int | None:
        assert self.proc is not None
        try:
            pid, status, usage = os.wait4(self.proc.pid, options)
        except ChildProcessError:  # reaped elsewhere (Popen.wait): no usage to keep
            self.proc.returncode = self.proc.returncode if self.proc.returncode is not None else -1
            return self.proc.returncode
        if not pid:
            return None
        self.usage = usage
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode


def wait_all(children: Iterable[Child], budget: float) -> None:
    """Wait for children spawned together: start-up costs the slowest one, not the sum."""
    deadline = time.monotonic() + budget
    for child in children:
        child.wait_listening(deadline)


def stop_all(children: Iterable[Child], grace: float = 3.0) -> None:
    """Stop children together: SIGTERM to all first, so their shutdowns overlap; then reap each."""
    children = list(children)
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        child.reap(deadline)
