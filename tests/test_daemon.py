"""The daemon end to end: the installed CLI as a subprocess against the loopback world.

`db upgrade`, a CSV source, `run --once` and `run` with a NOTIFY_SOCKET the test listens on;
states in the database must match each fixture's expected code; SIGTERM loses no completed
result; a second daemon on one SQLite file refuses to start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path


from cli import PROXYCHECK, run_cli, run_json
from world import EXPECTATIONS

# Storage identifies a proxy by everything but its password, so a fixture pair that differs only
# in the password is one stored proxy: the daemon's fleet takes the right-password ones (49 is
# still covered by squid-auth-no-credentials and socks4-ident-rejected).
FLEET = [e.name for e in EXPECTATIONS if not e.name.endswith("wrong-password")]
HEALTHY = {e.name for e in EXPECTATIONS if e.expected_code is None}


def write_daemon_config(world, tmp_path: Path, names: list[str] | None = None, *, database_url: str = "",
                        extra: str = "") -> Path:
    fixtures = [f for f in world.fixtures if names is None or f.name in names]
    csv = tmp_path / "proxies.csv"
    # Labels are neutral ids: fixture names contain words like "right-password", which would
    # make the "no password is ever printed" checks below find the label, not a leak.
    csv.write_text("url,label\n" + "".join(f"{f.url},{label_of(f.name)}\n" for f in fixtures))
    base = Path(world.config_path).read_text()
    head = f'state_dir = "{tmp_path / "state"}"\n' + (f'database_url = "{database_url}"\n' if database_url else "")
    daemon = f'\n[daemon]\nsources = ["{csv}"]\ndispatch_interval = 0.2\ndrain_grace = 10.0\n{extra}\n'
    # First checks are spread over one interval: keep it short so a test sees every proxy checked.
    daemon += "\n[health]\ninterval = 3.0\nfast_interval = 2.0\nfailing_interval = 2.0\nmax_interval = 4.0\n"
    path = tmp_path / "proxycheck.toml"
    path.write_text(head + base + daemon)
    return path


def label_of(name: str) -> str:
    return f"fixture-{[e.name for e in EXPECTATIONS].index(name)}"


def status_json(config: Path) -> dict:
    proc, data = run_json("status", "--config", str(config), "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return data


def by_label(data: dict) -> dict[str, dict]:
    """Status rows by fixture name."""
    names = {label_of(e.name): e.name for e in EXPECTATIONS}
    return {names[row["label"]]: row for row in data["proxies"]}


def assert_states_match(world, rows: dict[str, dict], names) -> None:
    for name in names:
        expectation = next(e for e in EXPECTATIONS if e.name == name)
        row = rows[name]
        if expectation.expected_code is None:
            assert row["state"] == "healthy", row
            assert row["anonymity"] == expectation.anonymity
        else:
            assert row["state"] == "unhealthy", row
            assert (row["code"], row["reason"]) == (expectation.expected_code, expectation.expected_reason_hint), row


def test_fleet_covers_every_code():
    assert {e.expected_code for e in EXPECTATIONS if e.name in FLEET and e.expected_code} == {25, 26, 27, 28, 29, 35, 36, 49}


def test_run_once_stores_every_fixture_verdict(world, tmp_path):
    config = write_daemon_config(world, tmp_path, FLEET)
    up = run_cli("db", "upgrade", "--config", str(config))
    assert up.returncode == 0, up.stderr
    proc = run_cli("run", "--once", "--config", str(config), timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = status_json(config)
    assert data["summary"]["counts"]["healthy"] == len(HEALTHY)
    assert data["summary"]["counts"]["unknown"] == 0
    assert len(data["proxies"]) == len(FLEET)
    assert_states_match(world, by_label(data), FLEET)
    secrets = {f.url.split(":")[2].split("@")[0] for f in world.fixtures if "@" in f.url}
    shown = run_cli("status", "--config", str(config))
    for secret in secrets:
        assert secret not in json.dumps(data) and secret not in shown.stdout and secret not in proc.stderr
    assert shown.returncode == 0
    assert "unhealthy" in shown.stdout and "proxycheck explain" in shown.stdout
    filtered = run_json("status", "--config", str(config), "--json", "--code", "29")[1]
    assert set(by_label(filtered)) == {"squid-forwarded-for", "tinyproxy-xtinyproxy"}


def test_daemon_refuses_an_old_schema(world, tmp_path):
    config = write_daemon_config(world, tmp_path, ["squid-anonymous"])
    proc = run_cli("run", "--once", "--config", str(config))
    assert proc.returncode == 2
    assert "proxycheck db upgrade" in proc.stderr and "Traceback" not in proc.stderr


class NotifyListener:
    """Receives the daemon's sd_notify datagrams on a thread of its own, as systemd does: a
    listener that stops reading would fill the socket's queue and hide later messages."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, field: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(field in m.split("\n") for m in list(self.messages)):
                return
            time.sleep(0.05)
        raise AssertionError(f"{field} not received within {timeout} s; got {self.messages}")

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self.sock.close()


def start_daemon(config: Path, notify: NotifyListener | None = None, **env: str) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXYCHECK_", "NOTIFY_SOCKET"))}
    full_env.update(env)
    if notify:
        full_env["NOTIFY_SOCKET"] = notify.path
    return subprocess.Popen([PROXYCHECK, "run", "--config", str(config)], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"daemon did not stop within {timeout} s:\n{err}") from None
    return proc.returncode, err


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_daemon_notifies_checks_and_stops_cleanly(world, tmp_path):
    names = ["squid-anonymous", "squid-elite", "squid-forwarded-for", "refused", "microsocks-auth-wrong-password", "squid-no-images"]
    config = write_daemon_config(world, tmp_path, names)
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = start_daemon(config, notify)
    try:
        notify.wait_for("READY=1", 20)
        wait_until(lambda: all(r["last_checked_at"] for r in status_json(config)["proxies"]), 30, "every proxy checked")
        second = run_cli("run", "--once", "--config", str(config))
        assert second.returncode == 2 and "another proxycheck daemon" in second.stderr, second.stderr
        data = status_json(config)
        assert data["summary"]["checker"]["state"] == "ok"
        assert_states_match(world, by_label(data), names)
    finally:
        code, err = stop(proc)
        notify.wait_for("STOPPING=1", 5)
        notify.close()
    assert code == 0, err
    statuses = [line for m in notify.messages for line in m.split("\n") if line.startswith("STATUS=")]
    assert any(re.match(r"STATUS=\d+ (unknown|healthy|unhealthy).*; checker ok; \d+ checks", line) for line in statuses), statuses
    assert "right-pass" not in err and "wrong-pass" not in err
    assert status_json(config)["summary"]["checker"]["state"] == "not running"


def test_sigterm_mid_round_keeps_every_completed_result(world, tmp_path):
    """Slow proxies are in flight when SIGTERM arrives; fast ones have finished: all are kept."""
    names = ["silent-http", "silent-socks5", "squid-anonymous", "squid-elite", "microsocks", "refused"]
    config = write_daemon_config(world, tmp_path, names)
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = start_daemon(config, notify)
    try:
        notify.wait_for("READY=1", 20)
        fast = {"squid-anonymous", "squid-elite", "microsocks", "refused"}
        wait_until(lambda: all(by_label(status_json(config))[n]["last_checked_at"] for n in fast), 20, "fast proxies checked")
    finally:
        code, err = stop(proc)  # the silent ones are still inside their probe deadline
        notify.close()
    assert code == 0, err
    rows = by_label(status_json(config))
    assert all(rows[n]["last_checked_at"] for n in names), {n: rows[n]["last_checked_at"] for n in names}
    assert_states_match(world, rows, names)


def test_sighup_resyncs_sources(world, tmp_path):
    config = write_daemon_config(world, tmp_path, ["squid-anonymous", "microsocks"])
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = start_daemon(config, notify)
    try:
        notify.wait_for("READY=1", 20)
        csv = tmp_path / "proxies.csv"
        elite = world.by_name("squid-elite")
        csv.write_text(f"url,label\n{world.by_name('squid-anonymous').url},{label_of('squid-anonymous')}\n"
                       f"{elite.url},{label_of('squid-elite')}\nnot-a-proxy://x,broken\n")
        notify.messages.clear()
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1", 10)
        notify.wait_for("READY=1", 10)
        rows = by_label(status_json(config))
        assert rows["microsocks"]["state"] == "disabled"
        assert "squid-elite" in rows
        wait_until(lambda: by_label(status_json(config))["squid-elite"]["state"] == "healthy", 20, "the new proxy checked")
    finally:
        code, err = stop(proc)
        notify.close()
    assert code == 0, err
    assert "proxies.csv:4: type: 'not-a-proxy' is not a proxy type" in err  # a bad row is logged, not fatal
