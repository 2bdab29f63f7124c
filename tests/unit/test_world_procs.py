"""The loopback world's child processes (proxycheck/world/procs.py) on real processes, and its
one-place rule: one ``free_port`` and one child reaper for the demo, the tests and the benches.

Children here are small Python programs; what is asserted is what happened to them (signalled,
reaped, their usage known), never how long it took.
"""

from __future__ import annotations

import ast
import signal
import sys
import time
from pathlib import Path

import pytest

from proxycheck.world import Child, WorldError, free_port, stop_all

ROOT = Path(__file__).resolve().parents[2]

IGNORES_SIGTERM = ("import signal, sys, time\n"
                   "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "print('ignoring SIGTERM', flush=True)\n"
                   "time.sleep(120)\n")
STOPS_ON_SIGTERM = "import time\nprint('up', flush=True)\ntime.sleep(120)\n"


def python(tmp_path: Path, name: str, program: str, **kw) -> Child:
    return Child(name, [sys.executable, "-c", program], tmp_path / f"{name}.log", **kw)


def wait_for_line(child: Child, text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in child.log.read_text():
        assert time.monotonic() < deadline, f"{child.name} never printed {text!r}"
        time.sleep(0.02)


@pytest.mark.parametrize("program, expected_code", [
    (STOPS_ON_SIGTERM, -signal.SIGTERM),  # stops on SIGTERM
    (IGNORES_SIGTERM, -signal.SIGKILL),  # ignores it: SIGKILL after the grace period
])
def test_stop_ends_and_reaps_the_child_with_its_usage(tmp_path, program, expected_code):
    child = python(tmp_path, "child", program).spawn()
    wait_for_line(child, "up" if program is STOPS_ON_SIGTERM else "ignoring SIGTERM")
    pid = child.proc.pid
    assert child.running()
    assert child.stop(grace=0.5) == expected_code
    assert not child.running() and child.returncode == expected_code
    assert child.usage is not None and child.usage.ru_utime + child.usage.ru_stime > 0  # wait4: its own rusage
    assert not Path(f"/proc/{pid}").exists()  # reaped: no zombie left behind


def test_stop_all_signals_every_child_before_waiting_for_any(tmp_path):
    children = [python(tmp_path, f"c{i}", STOPS_ON_SIGTERM).spawn() for i in range(3)]
    for child in children:
        wait_for_line(child, "up")
    stop_all(children, grace=10)
    assert [c.returncode for c in children] == [-signal.SIGTERM] * 3
    assert all(not Path(f"/proc/{c.proc.pid}").exists() for c in children)


def test_a_child_that_exits_at_start_up_is_an_error_with_its_log(tmp_path):
    child = python(tmp_path, "broken", "import sys; print('no such option: --frobnicate'); sys.exit(3)",
                   listens=[("127.0.0.1", free_port())]).spawn()
    with pytest.raises(WorldError) as raised:
        child.wait_listening(time.monotonic() + 30)
    assert "broken exited with status 3" in str(raised.value)
    assert "no such option: --frobnicate" in str(raised.value)  # the tail of its log, not just "did not start"


def test_a_child_that_never_listens_is_an_error_with_its_log(tmp_path):
    child = python(tmp_path, "deaf", STOPS_ON_SIGTERM, listens=[("127.0.0.1", free_port())]).spawn()
    try:
        wait_for_line(child, "up")
        with pytest.raises(WorldError) as raised:
            child.wait_listening(time.monotonic())  # the budget is already spent
        assert "deaf did not accept connections on 127.0.0.1:" in str(raised.value) and "up" in str(raised.value)
    finally:
        child.stop(grace=5)


def test_signal_after_the_child_was_reaped_touches_nothing(tmp_path):
    child = python(tmp_path, "quick", "print('bye')").spawn()
    assert child.wait(30) == 0
    child.signal(signal.SIGKILL)  # its PID may belong to someone else by now: never signalled
    assert child.stop(grace=0) == 0


def test_free_port_is_bindable_on_its_host():
    import socket

    for host in ("127.0.0.1", "127.0.1.99"):
        port = free_port(host)
        with socket.socket() as sock:
            sock.bind((host, port))


# -- one place ---------------------------------------------------------------------------------
# Names that mean "our own free-port finder" or "our own child reaper" anywhere in the code.
FREE_PORT_NAMES = {"free_port", "_free_port", "pick_port", "unused_port"}
REAPER_NAMES = {"reap", "kill_and_reap", "stop_children", "reap_children"}
HOME = ROOT / "proxycheck" / "world" / "procs.py"


def definitions(names: set[str]) -> list[str]:
    found = []
    for folder in ("proxycheck", "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return found


@pytest.mark.parametrize("names", [FREE_PORT_NAMES, REAPER_NAMES], ids=["free_port", "reaper"])
def test_one_free_port_and_one_child_reaper(names):
    found = definitions(names)
    assert found and all(entry.startswith(str(HOME.relative_to(ROOT)) + ":") for entry in found), (
        f"defined outside {HOME.relative_to(ROOT)}: use proxycheck.world instead of a copy\n" + "\n".join(found))
