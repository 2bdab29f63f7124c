"""Starting ``proxycheck run`` in a test: one place for the daemon-start setup, and the helpers
every daemon test reads its results with.

Rules:
1. ``running_daemon(config)`` is the one way a test runs the installed daemon: ``db upgrade``,
   start (the CLI, or a program of the test's own), wait for READY=1 on a NOTIFY_SOCKET the
   test listens on, optionally wait for every proxy's first check; on the way out it stops the
   daemon (SIGTERM, then SIGKILL if it does not stop in time) and closes the listener, whatever
   the test did. Its exit code and stderr are kept (``RunningDaemon.code`` and ``.err``), so
   assertions about the shutdown come after the ``with`` block.
2. The daemon reads the test's config and nothing of the environment: every ``PROXYCHECK_*``
   variable and any NOTIFY_SOCKET of the host are removed before it starts.
3. World proxies are labelled by neutral ids (``label_of``): fixture names contain words like
   "right-password", which would make "no password is ever printed" checks find the label.
4. The daemon's stdout and stderr go to a log file next to the config, never to a pipe: a pipe
   nobody reads until the end fills up in a long test and blocks the daemon mid-write.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from cli import PROXYCHECK, run_cli, run_json
from world import EXPECTATIONS
from world.build import JUDGE_HOST

from proxycheck.judge import Judge, JudgeOptions
from proxycheck.world import free_port

T = TypeVar("T")

# Storage identifies a proxy by everything but its password, so a fixture pair that differs only
# in the password is one stored proxy: a daemon's fleet takes the right-password ones (49 is
# still covered by squid-auth-no-credentials and socks4-ident-rejected).
FLEET = [e.name for e in EXPECTATIONS if not e.name.endswith("wrong-password")]


# -- the config and what the daemon stored ---------------------------------------------------------


def write_daemon_config(world, tmp_path: Path, names: list[str] | None = None, *, database_url: str = "",
                        extra: str = "", tags: dict[str, str] | None = None) -> Path:
    """A config for the world's proxies ``names`` (all when None), with short intervals so a test
    sees every proxy checked; ``extra`` lines go into ``[daemon]``; ``tags``: a proxy's tags by
    fixture name (one tag, or several separated by ``;``)."""
    fixtures = [f for f in world.fixtures if names is None or f.name in names]
    csv = tmp_path / "proxies.csv"
    tags = tags or {}
    csv.write_text("url,label,tags\n" + "".join(f"{f.url},{label_of(f.name)},{tags.get(f.name, '')}\n" for f in fixtures))
    base = Path(world.config_path).read_text()
    head = f'state_dir = "{tmp_path / "state"}"\n' + (f'database_url = "{database_url}"\n' if database_url else "")
    daemon = f'\n[daemon]\nsources = ["{csv}"]\ndispatch_interval = 0.2\ndrain_grace = 10.0\n{extra}\n'
    # First checks are spread over one interval: keep it short so a test sees every proxy checked.
    daemon += "\n[health]\ninterval = 3.0\nfast_interval = 2.0\nfailing_interval = 2.0\nmax_interval = 4.0\n"
    path = tmp_path / "proxycheck.toml"
    path.write_text(head + base + daemon)
    return path


def label_of(name: str) -> str:
    """The neutral label of world proxy ``name`` (rule 3)."""
    return f"fixture-{[e.name for e in EXPECTATIONS].index(name)}"


def status_json(config: Path) -> dict:
    proc, data = run_json("status", "--config", str(config), "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return data


def by_label(data: dict) -> dict[str, dict]:
    """Status rows by fixture name."""
    names = {label_of(e.name): e.name for e in EXPECTATIONS}
    return {names[row["label"]]: row for row in data["proxies"]}


def all_checked(config: Path) -> bool:
    """Every proxy in ``status`` has a stored check."""
    return all(r["last_checked_at"] for r in status_json(config)["proxies"])


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


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- the process -----------------------------------------------------------------------------------


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
        if not self._closed.is_set():
            self._closed.set()
            self._thread.join()
            self.sock.close()


def daemon_env(notify: NotifyListener | None = None, **env: str) -> dict[str, str]:
    """The environment of a daemon under test (rule 2)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PROXYCHECK_", "NOTIFY_SOCKET"))}
    full.update(env)
    if notify:
        full["NOTIFY_SOCKET"] = notify.path
    return full


def start_daemon(config: Path, log: Path, notify: NotifyListener | None = None, *, argv: list[str] | None = None,
                 **env: str) -> subprocess.Popen:
    """``proxycheck run --config CONFIG`` (or ``argv``), its stdout and stderr in ``log`` (rule 4)."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv or [PROXYCHECK, "run", "--config", str(config)], env=daemon_env(notify, **env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class RunningDaemon:
    """A daemon started by ``running_daemon``; ``code`` and ``err`` (its log) are set once it has exited."""

    config: Path
    proc: subprocess.Popen
    notify: NotifyListener | None
    log: Path
    code: int | None = None
    err: str = ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str]:
        """Send ``sig`` unless it has exited, and wait: (exit code, its log). Once stopped, later
        calls return the same. AssertionError (after a SIGKILL) when it does not stop within ``timeout``."""
        if self.code is None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.exited(timeout, f"the daemon to stop on signal {sig}")

    def exited(self, timeout: float, what: str = "the daemon to exit by itself") -> tuple[int, str]:
        """Wait for an exit the test expects without a signal; AssertionError (after a SIGKILL) if none."""
        if self.code is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{self.output()[-3000:]}") from None
            self.code, self.err = self.proc.returncode, self.output()
        return self.code, self.err

    def output(self) -> str:
        """What the daemon has logged so far."""
        return self.log.read_text(errors="replace")

    def reload(self, timeout: float = 10) -> None:
        """SIGHUP, then wait for RELOADING=1 and READY=1 again."""
        assert self.notify is not None, "reload() needs the daemon started with notify=True"
        self.notify.messages.clear()
        self.proc.send_signal(signal.SIGHUP)
        self.notify.wait_for("RELOADING=1", timeout)
        self.notify.wait_for("READY=1", timeout)


@contextlib.contextmanager
def running_daemon(config: Path, *, upgrade: bool = True, notify: bool | Path = True, ready: float = 20,
                   checked: float | None = None, argv: list[str] | None = None, stop_timeout: float = 30,
                   **env: str) -> Iterator[RunningDaemon]:
    """Run the daemon for the ``with`` block (rule 1).

    ``upgrade``: run ``db upgrade`` first. ``notify``: listen on a NOTIFY_SOCKET (next to the
    config, or at the path given) and wait up to ``ready`` seconds for READY=1. ``checked``: then
    wait up to that many seconds until every proxy has a stored check. ``argv``: run this instead
    of ``proxycheck run --config CONFIG`` (a test that patches the daemon before starting it)."""
    if upgrade:
        up = run_cli("db", "upgrade", "--config", str(config))
        assert up.returncode == 0, up.stderr
    listener = None
    if notify:
        listener = NotifyListener(notify if isinstance(notify, Path) else config.parent / "notify.sock")
    fd, name = tempfile.mkstemp(prefix="daemon-", suffix=".log", dir=config.parent)  # one per daemon started here
    os.close(fd)
    log = Path(name)
    daemon = RunningDaemon(config, start_daemon(config, log, listener, argv=argv, **env), listener, log)
    try:
        if listener is not None:
            listener.wait_for("READY=1", ready)
        if checked is not None:
            wait_until(lambda: all_checked(config), checked, "every proxy's first check")
        yield daemon
    finally:
        try:
            daemon.stop(timeout=stop_timeout)
        finally:
            if listener is not None:
                listener.close()


# -- a daemon with [http] on -----------------------------------------------------------------------


class Api:
    """A daemon started by ``running_api`` with [http] enabled, and what a test needs to talk to it."""

    def __init__(self, daemon: RunningDaemon, port: int) -> None:
        self.daemon, self.port = daemon, port
        self.config = daemon.config
        self.base = f"http://127.0.0.1:{port}"
        self.token_file = self.config.parent / "state" / "http-token"

    @property
    def proc(self) -> subprocess.Popen:
        return self.daemon.proc

    @property
    def code(self) -> int | None:
        return self.daemon.code

    @property
    def err(self) -> str:
        return self.daemon.err

    def get(self, path: str, token: str | None = None, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(self.base + path, headers=headers, trust_env=False, timeout=10, **kw)


@contextlib.contextmanager
def running_api(world, tmp_path: Path, names: list[str], *, extra: str = "", database_url: str = "",
                checked: bool = True, stop_timeout: float = 30, tags: dict[str, str] | None = None,
                tables: str = "") -> Iterator[Api]:
    """``running_daemon`` on the world's proxies ``names`` with [http] on a free port (``extra``
    lines go into [http]; ``tables``: more tables at the end, e.g. ``[geo]``; ``tags`` as for
    ``write_daemon_config``); with ``checked``, the block starts once every proxy has been checked."""
    port = free_port()
    config = write_daemon_config(world, tmp_path, names, database_url=database_url, tags=tags)
    config.write_text(config.read_text() + f'\n[http]\nenabled = true\nlisten = "127.0.0.1:{port}"\n{extra}'
                      '\n[worker]\nreprobe_after = 0.5\n' + tables)
    config.chmod(0o600)  # it may hold [http].token: others must not read it (config.py refuses)
    with running_daemon(config, checked=30 if checked else None, stop_timeout=stop_timeout) as daemon:
        yield Api(daemon, port)


def secrets_of(world, names) -> set[str]:
    """The passwords in the URLs of the world's proxies ``names``."""
    return {f.url.split(":")[2].split("@")[0] for f in world.fixtures if f.name in names and "@" in f.url}


# -- what the tests do to a daemon's world and read from its SQLite file -------------------------------


def sqlite_query(db: Path, sql: str, *args) -> list[tuple]:
    """``sql`` on the daemon's SQLite file, read-only (the daemon keeps writing meanwhile)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


class RestartableJudge:
    """A judge that can be killed and brought back on the same ports (the world's CA and certificate)."""

    def __init__(self, world) -> None:
        self.cert = str(world.workdir / "judge.pem")
        self.ports = (0, 0)
        self.judge: Judge | None = None

    def start(self) -> Judge:
        options = JudgeOptions(listen=(JUDGE_HOST, self.ports[0]), tls_listen=(JUDGE_HOST, self.ports[1]),
                               cert_file=self.cert, key_file=self.cert)
        self.judge = Judge(options).start()
        self.ports = tuple(int(u.rsplit(":", 1)[1]) for u in (self.judge.http_url, self.judge.https_url))
        return self.judge

    def kill(self) -> None:
        assert self.judge is not None
        self.judge.stop()
        self.judge = None
