"""`proxycheck demo`: the whole product on loopback with nothing but Python, checked by its table.

Tiers: the demo in-process (its status lines, what the worker is served, and that it leaves no
thread, descriptor, socket or file behind); the demo as a separate process (exit code, no
process or file left); the kept directory read back by the installed CLI; and the pure parts
of the demo proxies and the certificate maker on literal inputs.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from pathlib import Path

import pytest

from proxycheck import loop
from proxycheck.demo import FLEET, run_demo
from proxycheck.world.certs import make_certificates
from proxycheck.world.servers import Behaviour, blocked_reply, parse_head, refusal, upstream_request
from proxycheck.demo.run import EXPECTED_CODES
from proxycheck.verdict import ERROR_NAMES

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 60.0  # seconds, the promise
GOOD = {row.label for row in FLEET if row.code is None}


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """One in-process run, with tempfile pointed at an empty directory we can inspect after."""
    tmp = tmp_path_factory.mktemp("demo-tmp")
    _libuv_signals_once()
    threads, fds = set(threading.enumerate()), _fds()
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp))
        started = time.monotonic()
        code = run_demo(out=out)
        elapsed = time.monotonic() - started
    gc.collect()  # a transport or loop the run dropped is closed when collected, not a leak
    return {"code": code, "out": out.getvalue(), "elapsed": elapsed, "tmp": tmp,
            "threads_before": threads, "threads_after": set(threading.enumerate()),
            "fds_before": fds, "fds_after": _fds()}


def _libuv_signals_once() -> None:
    """The demo runs on uvloop (proxycheck/loop.py). libuv opens one pipe per process the first
    time any loop handles a signal, and keeps it for the process's life (not one per run): open
    it before counting, so the count shows what the run itself leaves."""
    async def handle_once() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, lambda: None)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)

    loop.run(handle_once())
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)


def status_line(output: str, label: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("http://") and f"({label})" in ln]
    assert len(lines) == 1, f"{label!r}: {len(lines)} status lines in\n{output}"
    return lines[0]


def served_labels(output: str) -> list[str]:
    section = output.split("4. A worker", 1)[1]
    labels = []
    for line in section.splitlines():
        if line.startswith("   http://"):
            labels.append(line.split("  ", 2)[2].strip())
    return labels


def test_failing_summary_names_every_code_shown(in_process):
    # `status`'s "failing:" line counts every code the rows below it show, not the top 5 of 8.
    (line,) = [ln for ln in in_process["out"].splitlines() if ln.startswith("failing: ")]
    listed = sorted(int(part.split()[0]) for part in line.removeprefix("failing: ").split(", "))
    assert listed == sorted(EXPECTED_CODES), line
    assert "36 ERROR_PROXY_INCOMPATIBLE_HTTP_VERSION x2" in line, line


def test_demo_passes_within_the_budget(in_process):
    assert in_process["code"] == 0, in_process["out"]
    assert in_process["elapsed"] < BUDGET
    assert re.search(r"demo finished in \d+\.\d s: every expected verdict appeared", in_process["out"])


@pytest.mark.parametrize("row", FLEET, ids=[row.label.removeprefix("demo: ") for row in FLEET])
def test_status_names_each_code_next_to_the_proxy_that_caused_it(in_process, row):
    line = status_line(in_process["out"], row.label)
    if row.code is None:
        assert "  healthy  " in line
        assert f"anonymity={'anonymous' if row.behaviour.via else 'elite'}" in line
        assert "ERROR_" not in line
    else:
        assert f"  unhealthy  {row.code} {ERROR_NAMES[row.code]}  reason={row.reason}  " in line


def test_every_code_in_scope_appears(in_process):
    codes = {int(m) for m in re.findall(r"  unhealthy  (\d+) ERROR_", in_process["out"])}
    assert codes == set(EXPECTED_CODES) == set(ERROR_NAMES)


def test_the_worker_is_served_only_good_proxies(in_process):
    served = served_labels(in_process["out"])
    assert len(served) == 6
    assert set(served) <= GOOD


def test_in_process_run_leaves_nothing_behind(in_process):
    assert list(in_process["tmp"].iterdir()) == []
    leftover = in_process["threads_after"] - in_process["threads_before"]
    assert not leftover, leftover
    assert in_process["fds_after"] <= in_process["fds_before"], _described(in_process["fds_after"] - in_process["fds_before"])
    ports = re.findall(r"127\.0\.3\.(\d+):(\d+)", in_process["out"])
    assert len(ports) >= len(FLEET) + 2  # each proxy, and the judge's HTTP and HTTPS
    for last, port in set(ports):
        with socket.socket() as s:
            s.settimeout(2)
            with pytest.raises(ConnectionRefusedError):
                s.connect((f"127.0.3.{last}", int(port)))


def test_demo_as_a_process_exits_0_and_leaves_nothing(tmp_path):
    marker = uuid.uuid4().hex
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYCHECK_")}
    env.update(TMPDIR=str(tmp), DEMO_TEST_MARKER=marker)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", "from proxycheck.demo import run_demo; raise SystemExit(run_demo())"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=BUDGET)
    assert time.monotonic() - started < BUDGET
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    for row in FLEET:
        if row.code is not None:
            assert f"{row.code} {ERROR_NAMES[row.code]}  reason={row.reason}" in status_line(proc.stdout, row.label)
    assert set(served_labels(proc.stdout)) <= GOOD
    assert list(tmp.iterdir()) == []
    assert _processes_with(marker) == []


def _processes_with(marker: str) -> list[int]:
    """PIDs whose environment carries ``marker``: anything the demo process left running."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_keep_leaves_a_directory_the_cli_can_read(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = io.StringIO()
    assert run_demo(keep=True, out=out) == 0, out.getvalue()
    match = re.search(r"proxycheck status --config (\S+)", out.getvalue())
    assert match, out.getvalue()
    config = Path(match.group(1))
    try:
        assert config.exists() and (config.parent / "state" / "proxycheck.db").exists()
        cli = shutil.which("proxycheck", path=str(Path(sys.executable).parent))
        assert cli, "the proxycheck console script is not installed next to this Python"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYCHECK_")}
        proc = subprocess.run([cli, "status", "--config", str(config), "--json"], capture_output=True, text=True,
                              env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        rows = {p["label"]: p for p in json.loads(proc.stdout)["proxies"]}
        for row in FLEET:
            assert rows[row.label]["code"] == row.code
            assert rows[row.label]["reason"] == row.reason
    finally:
        shutil.rmtree(config.parent)


def test_the_demo_ships_in_the_wheel():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "proxycheck").rglob("__init__.py")}
    assert on_disk <= set(packages), f"packages missing from pyproject.toml: {sorted(on_disk - set(packages))}"


# --- the pure parts ------------------------------------------------------------------------------

AUTH = ("demo", "right-pass")
GOOD_AUTH = "Proxy-Authorization: Basic ZGVtbzpyaWdodC1wYXNz"  # demo:right-pass
LONG = "GET http://127.0.0.1:8080/long?pad=" + "x" * 2100 + " HTTP/1.1"


def head(line: str, *headers: str) -> bytes:
    return ("\r\n".join([line, "Host: 127.0.0.1", *headers]) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    "behaviour, raw, status",
    [
        (Behaviour(), head("GET http://127.0.0.1:8080/get HTTP/1.1"), None),
        (Behaviour(), head("CONNECT 127.0.0.1:8443 HTTP/1.1"), None),
        (Behaviour(reject_connect=True), head("CONNECT 127.0.0.1:8443 HTTP/1.1"), 403),
        (Behaviour(reject_connect=True), head("GET http://127.0.0.1:8080/get HTTP/1.1"), None),
        (Behaviour(max_request_line=1024), head(LONG), 414),
        (Behaviour(max_request_line=1024), head("GET http://127.0.0.1:8080/get HTTP/1.1"), None),
        (Behaviour(credentials=AUTH), head("GET http://127.0.0.1:8080/get HTTP/1.1"), 407),
        (Behaviour(credentials=AUTH), head("CONNECT 127.0.0.1:8443 HTTP/1.1"), 407),
        (Behaviour(credentials=AUTH), head("GET http://127.0.0.1:8080/get HTTP/1.1", "Proxy-Authorization: Basic eDp5"), 407),
        (Behaviour(credentials=AUTH), head("GET http://127.0.0.1:8080/get HTTP/1.1", GOOD_AUTH), None),
        (Behaviour(), head("GET http://203.0.113.7/ HTTP/1.1"), 403),  # never an open proxy
        (Behaviour(), head("CONNECT www.google.com:443 HTTP/1.1"), 403),
        (Behaviour(), head("GET /relative HTTP/1.1"), 400),
        (Behaviour(), head("CONNECT 127.0.0.1 HTTP/1.1"), 400),
    ],
)
def test_refusal_table(behaviour, raw, status):
    answer = refusal(parse_head(raw), behaviour)
    if status is None:
        assert answer is None
    else:
        assert answer is not None and answer.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"\r\nConnection: close\r\n" in answer


def test_parse_head_rejects_what_is_not_http():
    for raw in (b"\x16\x03\x01 garbage\r\n\r\n", b"GET / SPDY/3\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"):
        with pytest.raises(ValueError):
            parse_head(raw)


@pytest.mark.parametrize(
    "behaviour, present, absent",
    [
        (Behaviour(), [], ["Via:", "X-Forwarded-For:"]),
        (Behaviour(via=True), ["Via: 1.1 proxycheck-demo"], ["X-Forwarded-For:"]),
        (Behaviour(leak_client_ip=True), ["X-Forwarded-For: 127.0.0.1"], ["Via:"]),
    ],
)
def test_upstream_request_is_origin_form_with_the_proxys_headers(behaviour, present, absent):
    raw = head("GET http://127.0.0.1:8080/get?a=1 HTTP/1.1", GOOD_AUTH, "Proxy-Connection: keep-alive", "Accept: */*")
    host, port, request = upstream_request(parse_head(raw), behaviour, "127.0.0.1")
    text = request.decode()
    assert (host, port) == ("127.0.0.1", 8080)
    assert text.startswith("GET /get?a=1 HTTP/1.1\r\n") and text.endswith("Connection: close\r\n\r\n")
    assert "Accept: */*" in text and "Proxy-" not in text
    assert all(p in text for p in present) and not any(a in text for a in absent)


@pytest.mark.parametrize(
    "behaviour, content_type, blocked",
    [
        (Behaviour(block_images=True), "image/png", True),
        (Behaviour(block_images=True), "Image/JPEG; q=1", True),
        (Behaviour(block_images=True), "application/json", False),
        (Behaviour(), "image/png", False),
    ],
)
def test_blocked_reply(behaviour, content_type, blocked):
    response = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: 3\r\n\r\n".encode()
    answer = blocked_reply(response, behaviour)
    assert (answer is not None and answer.startswith(b"HTTP/1.1 403 ")) is blocked


def test_demo_certificates_verify_strictly(tmp_path):
    """The demo CA and server certificate pass OpenSSL's strict X.509 checks in a real handshake."""
    certs = make_certificates("127.0.0.1")
    (tmp_path / "ca.pem").write_text(certs.ca_pem)
    (tmp_path / "server.pem").write_text(certs.server_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(tmp_path / "server.pem"))
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with client_ctx.wrap_socket(socket.create_connection(listener.getsockname(), timeout=10),
                                        server_hostname="127.0.0.1") as tls:
                assert tls.recv(5) == b"hello"
        finally:
            thread.join(10)


def _described(fds: set[str]) -> dict[str, str]:
    out = {}
    for fd in fds:
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            out[fd] = "?"
    return out
