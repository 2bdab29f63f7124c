"""The ``/status`` helper process (http_api/status_proc.py) against a real ``proxycheck run``
with ``[http]`` on: it runs at nice 10, it is gone before the daemon's own exit (systemd's
KillMode=mixed SIGKILLs whatever is left when the main process exits), it follows a SIGKILLed
daemon, and ``proxycheck doctor`` asks the endpoint what a worker asks it.

Real parts: the doctor tests' loopback judge as [targets], SQLite migrated by Alembic, the
daemon as a subprocess; processes are looked up in /proc.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import httpx
import pytest

from proxycheck import doctor
from proxycheck.world import free_port
from daemons import running_daemon, wait_until
from test_doctor import HOST, judge, migrate, write_config  # noqa: F401 - judge is a fixture

TOKEN = "status-helper-test-token-" + "x" * 20


@pytest.fixture
def daemon(tmp_path, judge):  # noqa: F811 - the fixture imported above
    """(daemon, config, base URL, its children seen by the test); children still alive at the
    end are killed before the daemon's pipes are read (they would hold them open)."""
    port = free_port(HOST)
    config = write_config(tmp_path, judge.http_url, judge.https_url, judge.ca_file)
    config.write_text(config.read_text() + f'[http]\nenabled = true\nlisten = "{HOST}:{port}"\ntoken = "{TOKEN}"\n')
    config.chmod(0o600)  # it holds the token: a config others can read is refused
    migrate(config)
    seen: list[int] = []
    # Leaving the block stops the daemon, unless a test already ended it.
    with running_daemon(config, upgrade=False, ready=30) as running:
        try:
            yield running.proc, config, f"http://{HOST}:{port}", seen
        finally:
            for pid in seen:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def get_status(base: str) -> httpx.Response:
    return httpx.get(f"{base}/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, trust_env=False)


def children_of(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def helpers_of(pid: int) -> list[int]:
    """The daemon's children that are /status helpers."""
    return [c for c in children_of(pid) if b"status_proc import main" in _cmdline(c)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_helper_runs_at_nice_10_and_is_gone_before_the_daemon_exits(daemon):
    proc, _, base, seen = daemon
    assert get_status(base).status_code == 200
    (helper,) = helpers_of(proc.pid)
    assert nice_of(helper) == 10
    seen += children_of(proc.pid)  # the helper, and any process that came with it
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0  # waitpid: not its pipes, which a child may still hold
    # The daemon has exited: under systemd (KillMode=mixed), anything still here now is SIGKILLed.
    left = {pid: _cmdline(pid).replace(b"\0", b" ")[:100] for pid in seen if alive(pid)}
    assert not left, f"outlived the daemon: {left}"


def test_the_helper_follows_a_killed_daemon(daemon):
    proc, _, base, seen = daemon
    assert get_status(base).status_code == 200
    (helper,) = helpers_of(proc.pid)
    seen.append(helper)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not alive(helper), 10, "the orphaned /status helper to exit")


def test_doctor_asks_the_endpoint(daemon):
    _, config, base, _ = daemon
    out = io.StringIO()
    doctor.doctor_command(str(config), out=out)
    (line,) = [ln for ln in out.getvalue().splitlines() if ln.startswith(("OK   http", "FAIL http"))]
    assert line == f"OK   http: {base}: GET /status with the token ([http].token) answered 200", out.getvalue()
    assert TOKEN not in out.getvalue()
