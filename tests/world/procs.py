"""Running real proxy software as child processes: start, wait for the port, stop by PID.

Rules:
1. Every daemon runs in the foreground as our direct child, its output in a log file in the
   world's directory; we stop exactly the PIDs we started (SIGTERM, then SIGKILL) and reap them.
2. A daemon that does not accept connections within its start-up budget is an error whose
   message carries the tail of its logs: "squid-main did not start" alone helps nobody.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class WorldError(RuntimeError):
    """The loopback world could not be built; the message says which part and why."""


def free_port(host: str) -> int:
    """A port nobody on ``host`` is bound to right now (each world address is ours alone)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"    ({path} does not exist)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or f"    ({path} is empty)"


@dataclass
class Daemon:
    """One child process and the addresses it must listen on before it counts as started."""

    name: str
    argv: list[str]
    listens: list[tuple[str, int]]
    log: Path  # stdout and stderr
    extra_logs: list[Path] = field(default_factory=list)  # e.g. squid's cache.log
    proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, deadline: float) -> None:
        pending = list(self.listens)
        while pending:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise WorldError(f"{self.name} exited with status {self.proc.returncode} at start-up\n{self.logs()}")
            if accepts(*pending[0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                where = ", ".join(f"{h}:{p}" for h, p in pending)
                raise WorldError(f"{self.name} did not accept connections on {where} in time\n{self.logs()}")
            time.sleep(0.02)

    def logs(self) -> str:
        return "\n".join(f"  {path}:\n{tail(path)}" for path in [self.log, *self.extra_logs])

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)  # our child, by PID
            except ProcessLookupError:
                pass

    def reap(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=5)


def wait_all(daemons: list[Daemon], budget: float) -> None:
    """Wait for daemons spawned together: start-up costs the slowest one, not the sum."""
    deadline = time.monotonic() + budget
    for daemon in daemons:
        daemon.wait_ready(deadline)


def stop_all(daemons: list[Daemon], grace: float = 3.0) -> None:
    for daemon in daemons:
        daemon.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for daemon in daemons:
        daemon.reap(deadline)
