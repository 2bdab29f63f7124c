"""The judge server: every endpoint, the ban modes, and the rules that keep it from being a proxy.

A real judge on 127.0.0.2 (port 0), real httpx requests (``trust_env=False``), HTTPS with a
trustme CA; raw sockets where the point is bytes httpx would never send.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from proxycheck import judge as judge_mod
from proxycheck.judge import IMAGE_PNG, UNUSUAL_TRAFFIC, Judge, JudgeOptions, make_png, parse_listen

HOST = "127.0.0.2"
CLIENT_IP = "127.0.0.1"  # what the judge sees when we connect to 127.0.0.2


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ca = trustme.CA()
    d = tmp_path_factory.mktemp("judge-tls")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(str(d / "judge.pem"))
    return d / "ca.pem", d / "judge.pem"


def _options(tls_files: tuple[Path, Path], **kw) -> JudgeOptions:
    return JudgeOptions(
        listen=(HOST, 0), tls_listen=(HOST, 0), cert_file=str(tls_files[1]), key_file=str(tls_files[1]), **kw
    )


@pytest.fixture(scope="module")
def judge(tls_files: tuple[Path, Path]) -> Iterator[Judge]:
    with Judge(_options(tls_files, ban_ips=frozenset({"127.0.0.9"}))) as running:
        yield running


@pytest.fixture
def client(tls_files: tuple[Path, Path]) -> Iterator[httpx.Client]:
    ctx = ssl.create_default_context(cafile=str(tls_files[0]))
    with httpx.Client(trust_env=False, verify=ctx, timeout=5) as c:
        yield c


def _hostport(url: str) -> tuple[str, int]:
    host, _, port = url.partition("://")[2].rpartition(":")
    return host, int(port)


def _raw(url: str, data: bytes, timeout: float = 5) -> bytes:
    """Send bytes, read until the judge closes the connection."""
    with socket.create_connection(_hostport(url), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_get_echoes_args_headers_origin_and_url(judge: Judge, client: httpx.Client, scheme: str) -> None:
    base = judge.http_url if scheme == "http" else judge.https_url
    r = client.get(f"{base}/get?a=1&a=2&b=", headers={"x-forwarded-for": "10.9.8.7", "Via": "1.1 squid"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["args"] == {"a": ["1", "2"], "b": ""}
    assert body["headers"]["X-Forwarded-For"] == "10.9.8.7"  # httpbin's Title-Case naming
    assert body["headers"]["Via"] == "1.1 squid"
    assert body["headers"]["Host"] == base.partition("://")[2]
    assert body["origin"] == CLIENT_IP  # the peer, never the forwarding header
    assert body["url"] == f"{base}/get?a=1&a=2&b="


def test_azenv_lists_every_header_as_cgi_variables(judge: Judge, client: httpx.Client) -> None:
    r = client.get(f"{judge.http_url}/azenv?x=1", headers={"X-Forwarded-For": "10.9.8.7", "Via": "1.1 proxy"})
    assert r.status_code == 200
    lines = set(r.text.splitlines())
    assert "<title>AZ Environment variables 1.04</title>" in lines
    assert {
        f"REMOTE_ADDR = {CLIENT_IP}",
        "HTTP_X_FORWARDED_FOR = 10.9.8.7",
        "HTTP_VIA = 1.1 proxy",
        "HTTP_USER_AGENT = python-httpx/0.28.1",
        "REQUEST_METHOD = GET",
        "REQUEST_URI = /azenv?x=1",
    } <= lines


def test_azenv_over_https_says_so(judge: Judge, client: httpx.Client) -> None:
    assert "HTTPS = on" in client.get(f"{judge.https_url}/azenv").text.splitlines()


def test_ip_as_json_and_as_text(judge: Judge, client: httpx.Client) -> None:
    assert client.get(f"{judge.http_url}/ip").json() == {"origin": CLIENT_IP}
    r = client.get(f"{judge.http_url}/ip?format=text")
    assert (r.text, r.headers["content-type"]) == (CLIENT_IP, "text/plain; charset=utf-8")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_image_is_a_real_png(judge: Judge, client: httpx.Client, scheme: str) -> None:
    base = judge.http_url if scheme == "http" else judge.https_url
    r = client.get(f"{base}/image.png")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert int(r.headers["content-length"]) == len(r.content) == len(IMAGE_PNG)
    assert r.content == IMAGE_PNG == make_png()  # deterministic
    assert 4_000 < len(r.content) < 16_500
    png = r.content
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    assert (width, height, depth, colour) == (64, 64, 8, 2)
    # Every chunk's CRC is right and the pixel data inflates to the declared size.
    pos, idat = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + data)
        idat += data if kind == b"IDAT" else b""
        pos += 12 + length
    assert len(zlib.decompress(idat)) == height * (1 + width * 3)


def test_long_answers_with_the_target_length(judge: Judge, client: httpx.Client) -> None:
    query = "q=" + "a" * 2500
    r = client.get(f"{judge.http_url}/long?{query}")
    assert (r.status_code, r.text) == (200, f"ok {len('/long?' + query)}")


def test_health(judge: Judge, client: httpx.Client) -> None:
    r = client.get(f"{judge.https_url}/health")
    assert (r.status_code, r.text) == (200, "ok")


def test_unknown_path_is_a_json_404(judge: Judge, client: httpx.Client) -> None:
    r = client.get(f"{judge.http_url}/nope")
    assert r.status_code == 404
    assert r.json()["path"] == "/nope"


def test_head_sends_the_length_but_no_body(judge: Judge) -> None:
    raw = _raw(judge.http_url, b"HEAD /image.png HTTP/1.1\r\nHost: j\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"Content-Length: {len(IMAGE_PNG)}".encode() in head
    assert body == b""


def test_other_methods_are_405(judge: Judge, client: httpx.Client) -> None:
    r = client.post(f"{judge.http_url}/get", content=b"x")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")


# --- the ban target ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/recaptcha/api2/anchor", "/ban"])
def test_ban_target_serves_a_page_to_peers_not_banned(judge: Judge, client: httpx.Client, path: str) -> None:
    r = client.get(f"{judge.https_url}{path}?k=site-key")
    assert r.status_code == 200
    assert "recaptcha-anchor" in r.text


@pytest.mark.parametrize(
    ("mode", "status", "marker"),
    [
        ("sorry", 302, None),
        ("429", 429, UNUSUAL_TRAFFIC),
        ("unusual", 403, UNUSUAL_TRAFFIC),
        ("cloudflare", 403, "Just a moment..."),
    ],
)
def test_ban_modes_for_a_banned_peer(tls_files, client: httpx.Client, mode: str, status: int, marker: str | None) -> None:
    with Judge(_options(tls_files, ban_ips=frozenset({CLIENT_IP}), ban_mode=mode)) as banning:
        r = client.get(f"{banning.https_url}/recaptcha/api2/anchor?k=1")
        assert r.status_code == status
        if marker is not None:
            assert marker in r.text
        if mode == "sorry":
            assert r.headers["location"].startswith("https://www.google.com/sorry/index?continue=https%3A%2F%2F127.0.0.2")
        if mode == "cloudflare":
            assert r.headers["cf-mitigated"] == "challenge"
            assert r.headers["server"] == "cloudflare"
        # Only the ban target bans: the echo endpoints still answer.
        assert client.get(f"{banning.http_url}/get").status_code == 200


# --- never a proxy -----------------------------------------------------------------------------


def test_absolute_form_for_another_host_is_refused_and_never_forwarded(judge: Judge) -> None:
    with socket.socket() as bystander:  # the "other host": it must never see a connection
        bystander.bind(("127.0.0.3", 0))
        bystander.listen(1)
        bystander.settimeout(0.3)
        port = bystander.getsockname()[1]
        raw = _raw(judge.http_url, f"GET http://127.0.0.3:{port}/ HTTP/1.1\r\nHost: 127.0.0.3:{port}\r\n\r\n".encode())
        with pytest.raises(TimeoutError):
            bystander.accept()
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in raw
    assert b"not a proxy" in raw


def test_absolute_form_naming_the_judge_itself_is_served(judge: Judge) -> None:
    host, port = _hostport(judge.http_url)
    raw = _raw(judge.http_url, f"GET http://{host}:{port}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"\r\n\r\nok")


def test_connect_is_refused(judge: Judge) -> None:
    raw = _raw(judge.http_url, b"CONNECT 127.0.0.3:443 HTTP/1.1\r\nHost: 127.0.0.3:443\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 405 ")


# --- caps --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_judge() -> Iterator[Judge]:
    with Judge(JudgeOptions(listen=(HOST, 0), max_request_line=1024, max_body=100)) as running:
        yield running


def test_request_line_over_the_cap_is_414(small_judge: Judge, client: httpx.Client) -> None:
    fits = "/long?" + "a" * (1024 - len("GET  HTTP/1.1") - len("/long?"))
    assert client.get(small_judge.http_url + fits).text == f"ok {len(fits)}"
    r = client.get(small_judge.http_url + fits + "a")
    assert r.status_code == 414
    assert r.headers["connection"] == "close"


@pytest.mark.parametrize("size", [101, 1_000_000])
def test_body_over_the_cap_is_413(small_judge: Judge, size: int) -> None:
    # Even while the client is still sending a big body, it reads the 413 (not a reset).
    raw = _raw(small_judge.http_url, b"GET /get HTTP/1.1\r\nHost: j\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    assert raw.startswith(b"HTTP/1.1 413 ")


def test_a_huge_request_line_is_414_not_a_reset(small_judge: Judge) -> None:
    raw = _raw(small_judge.http_url, b"GET /long?" + b"a" * 500_000 + b" HTTP/1.1\r\nHost: j\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 414 ")


def test_a_body_within_the_cap_is_drained_and_the_connection_reused(small_judge: Judge) -> None:
    first = b"GET /health HTTP/1.1\r\nHost: j\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    second = b"GET /health HTTP/1.1\r\nHost: j\r\nConnection: close\r\n\r\n"
    raw = _raw(small_judge.http_url, first + second)
    assert raw.count(b"HTTP/1.1 200 OK") == 2


def test_more_than_100_headers_is_refused(judge: Judge) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    raw = _raw(judge.http_url, b"GET /get HTTP/1.1\r\nHost: j\r\n" + headers + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 431 ")


# --- connections, errors, logging, lifecycle ---------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_keep_alive_serves_several_requests_on_one_connection(judge: Judge, client: httpx.Client, scheme: str) -> None:
    base = judge.http_url if scheme == "http" else judge.https_url
    ports = set()
    for path in ("/azenv", "/image.png", "/azenv"):
        r = client.get(base + path)
        assert r.status_code == 200
        assert "connection" not in r.headers  # HTTP/1.1 default: keep-alive
        ports |= {line for line in r.text.splitlines() if line.startswith("REMOTE_PORT = ")} if path == "/azenv" else set()
    assert len(ports) == 1  # same client port both times: one TCP connection


def test_a_burst_of_connections_is_not_dropped(judge: Judge) -> None:
    """A small listen backlog drops SYNs under a burst, and each drop costs a 1 s retransmit."""
    durations: list[float] = []

    def fetch() -> None:
        started = time.monotonic()
        _raw(judge.http_url, b"GET /health HTTP/1.1\r\nHost: j\r\nConnection: close\r\n\r\n")
        durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=fetch) for _ in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(durations) == 150
    assert max(durations) < 0.9


def test_keep_alive_on_a_raw_socket(judge: Judge) -> None:
    with socket.create_connection(_hostport(judge.http_url), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: j\r\n\r\n")
            assert sock.recv(4096).endswith(b"Content-Length: 2\r\nCache-Control: no-store\r\n\r\nok")


def test_an_endpoint_error_answers_500_and_the_server_keeps_serving(
    judge: Judge, client: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(req, options):
        raise RuntimeError("boom")

    monkeypatch.setitem(judge_mod.ROUTES, "/health", broken)
    with caplog.at_level(logging.ERROR, logger="proxycheck.judge"):
        assert client.get(f"{judge.http_url}/health").status_code == 500
    assert "boom" in caplog.text
    assert client.get(f"{judge.http_url}/get").status_code == 200


def test_quiet_unless_verbose(tls_files, client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="proxycheck.judge")
    with Judge(JudgeOptions(listen=(HOST, 0))) as quiet:
        client.get(f"{quiet.http_url}/health")
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    with Judge(JudgeOptions(listen=(HOST, 0), verbose=True)) as chatty:
        client.get(f"{chatty.http_url}/health")
    assert any("GET /health" in r.getMessage() for r in caplog.records)


def test_stop_is_prompt_with_an_idle_keep_alive_connection_open(tls_files) -> None:
    running = Judge(_options(tls_files)).start()
    with socket.create_connection(_hostport(running.http_url)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: j\r\n\r\n")
        sock.recv(4096)
        started = time.monotonic()
        running.stop()
        assert time.monotonic() - started < 1.0
        assert sock.recv(4096) == b""  # the judge closed its side


def test_urls_need_a_running_judge_and_a_tls_listener() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        Judge().http_url
    with Judge(JudgeOptions(listen=(HOST, 0))) as plain:
        with pytest.raises(RuntimeError, match="no HTTPS listener"):
            plain.https_url


def test_serve_forever_stops_cleanly_on_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    code = f"from proxycheck.judge import *; serve_forever(JudgeOptions(listen=({HOST!r}, {port})))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert httpx.get(f"http://{HOST}:{port}/health", trust_env=False).text == "ok"
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, proc.stdout.read() if proc.poll() is not None else "judge never came up"
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --- options and listen addresses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("127.0.0.2:0", ("127.0.0.2", 0)),
        ("[::1]:8080", ("::1", 8080)),
        (":8080", ("0.0.0.0", 8080)),
        ("judge.example.org:80", ("judge.example.org", 80)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8080", "expected HOST:PORT"),
        ("::1:8080", "brackets"),
        ("[::1]8080", r"\[ADDRESS\]:PORT"),
        ("127.0.0.1:http", "not a number"),
        ("127.0.0.1:70000", "not a number from 0 to 65535"),
    ],
)
def test_parse_listen_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_listen(text)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"ban_mode": "teapot"}, "ban_mode 'teapot' is unknown"),
        ({"tls_listen": ("127.0.0.1", 0)}, "needs cert_file and key_file"),
        ({"ban_ips": frozenset({"not-an-ip"})}, "not an IP address"),
        ({"max_request_line": 10}, "at least 64"),
        ({"target_bans": (("cloudflare", frozenset()),)}, "'cloudflare' is not a preset"),
        ({"target_bans": (("turnstile", frozenset({"nope"})),)}, "target_bans: 'nope' is not an IP"),
    ],
)
def test_options_are_validated(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JudgeOptions(**kw)


def test_ban_ips_are_normalised() -> None:
    assert JudgeOptions(ban_ips=frozenset({"::ffff:10.0.0.1"})).ban_ips == frozenset({"10.0.0.1"})


def test_json_answers_end_with_a_newline(judge: Judge, client: httpx.Client) -> None:
    text = client.get(f"{judge.http_url}/ip").text
    assert text.endswith("}\n") and json.loads(text)
