"""The world behaves as its table says, checked with plain httpx and sockets (not the checker).

If one of these fails, a checker test that disagrees with the table proves nothing: fix the
world first.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
import tomllib

import httpx
import pytest

from proxycheck import verdict
from proxycheck.judge import IMAGE_PNG, PRESET_ROUTES, UNUSUAL_TRAFFIC
from world import CHECKER_IP, EXPECTATIONS, World, WorldProxy

pytestmark = pytest.mark.world

HTTP_PROXIES_THAT_FORWARD = [
    "squid-anonymous",
    "squid-elite",
    "squid-auth-right-password",
    "squid-no-images",
    "squid-no-connect",
    "squid-banned-exit",
    "squid-forwarded-for",
    "squid-short-headers",
    "tinyproxy-xtinyproxy",
    "tinyproxy-anonymous",
    "squid-no-persistent",
    "tls-interceptor",
]


@pytest.fixture(scope="module")
def ctx(world: World) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(world.ca_file))


def via(proxy: WorldProxy | str, ctx: ssl.SSLContext, timeout: float = 3) -> httpx.Client:
    url = proxy.url if isinstance(proxy, WorldProxy) else proxy
    return httpx.Client(proxy=url, verify=ctx, trust_env=False, timeout=timeout)


def hostport(url: str) -> tuple[str, int]:
    host, _, port = url.partition("://")[2].rpartition("@")[2].rpartition(":")
    return host, int(port)


def judge_ip_port(world: World, scheme: str = "http") -> tuple[str, int]:
    return hostport(world.judge.http_url if scheme == "http" else world.judge.https_url)


# --- the table ---------------------------------------------------------------------------------


def test_every_row_names_a_known_code_and_reason() -> None:
    for row in EXPECTATIONS:
        if row.expected_code is None:
            assert row.expected_reason_hint is None and row.anonymity in ("elite", "anonymous"), row
        else:
            assert verdict.code_for(row.expected_reason_hint) == row.expected_code, row
    assert len({row.name for row in EXPECTATIONS}) == len(EXPECTATIONS)
    # every anti-captcha code in scope has at least one proxy that earns it
    assert {row.expected_code for row in EXPECTATIONS} == {None, *verdict.ERROR_NAMES}


def test_world_starts_quickly_and_lists_every_row(world: World) -> None:
    assert world.startup_seconds < 10
    assert [p.name for p in world.fixtures] == [row.name for row in EXPECTATIONS]
    assert world.by_name("squid-elite").anonymity == "elite"
    with pytest.raises(KeyError, match="known: squid-anonymous"):
        world.by_name("nope")


def test_config_file_points_at_the_judge(world: World) -> None:
    config = tomllib.loads(world.config_path.read_text())
    targets = config["targets"]
    assert targets["judge_url"] == world.judge.http_url + "/get"
    assert "ban_url" not in targets  # one [[targets.ban]] per preset instead
    assert {t["preset"]: t["url"] for t in targets["ban"]} == {
        preset: world.judge.https_url + route for preset, route in PRESET_ROUTES.items()
    }
    assert targets["image_urls"] == [world.judge.http_url + "/image.png", world.judge.https_url + "/image.png"]
    assert targets["ca_file"] == str(world.ca_file)
    assert config["timeouts"] == {"connect": 1.0, "read": 2.0, "probe": 4.0}


def test_direct_requests_come_from_the_checker_address(world: World, ctx: ssl.SSLContext) -> None:
    with httpx.Client(verify=ctx, trust_env=False) as client:
        assert client.get(world.judge.https_url + "/ip").json() == {"origin": CHECKER_IP}


# --- HTTP proxies ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HTTP_PROXIES_THAT_FORWARD)
def test_http_proxies_reach_the_judge_from_their_own_exit(world: World, ctx: ssl.SSLContext, name: str) -> None:
    proxy = world.by_name(name)
    with via(proxy, ctx) as client:
        body = client.get(world.judge.http_url + "/get").json()
    assert body["origin"] == proxy.egress != CHECKER_IP


@pytest.mark.parametrize("name", sorted(set(HTTP_PROXIES_THAT_FORWARD) - {"squid-no-connect", "tls-interceptor"}))
def test_tunnels_leave_from_the_same_exit(world: World, ctx: ssl.SSLContext, name: str) -> None:
    proxy = world.by_name(name)
    with via(proxy, ctx) as client:
        assert client.get(world.judge.https_url + "/ip").json() == {"origin": proxy.egress}


def test_anonymous_squid_says_via_but_not_who(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("squid-anonymous"), ctx) as client:
        headers = client.get(world.judge.http_url + "/get").json()["headers"]
    assert headers["Via"] == "1.1 proxycheck-world (squid/5.7)"
    assert "X-Forwarded-For" not in headers
    assert CHECKER_IP not in str(headers)


def test_elite_squid_adds_nothing(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("squid-elite"), ctx) as client:
        headers = client.get(world.judge.http_url + "/get").json()["headers"]
    assert set(headers) == {"Host", "Accept", "Accept-Encoding", "User-Agent", "Connection"}


def test_forwarded_for_squid_leaks_the_client_address(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("squid-forwarded-for"), ctx) as client:
        headers = client.get(world.judge.http_url + "/get").json()["headers"]
    assert headers["X-Forwarded-For"] == CHECKER_IP


def test_tinyproxy_leaks_the_client_address(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("tinyproxy-xtinyproxy"), ctx) as client:
        body = client.get(world.judge.http_url + "/azenv").text
    assert f"HTTP_X_TINYPROXY = {CHECKER_IP}" in body.splitlines()


@pytest.mark.parametrize(("name", "status"), [("squid-auth-wrong-password", 407), ("squid-auth-no-credentials", 407), ("squid-auth-right-password", 200)])
def test_auth_squid(world: World, ctx: ssl.SSLContext, name: str, status: int) -> None:
    with via(world.by_name(name), ctx) as client:
        r = client.get(world.judge.http_url + "/get")
    assert r.status_code == status
    if status == 407:
        assert r.headers["proxy-authenticate"] == 'Basic realm="proxycheck-world"'


def test_auth_squid_refuses_a_tunnel_with_the_wrong_password(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("squid-auth-wrong-password"), ctx) as client, pytest.raises(httpx.ProxyError, match="407"):
        client.get(world.judge.https_url + "/health")


def test_image_squid_blocks_the_plain_http_png_only(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("squid-no-images"), ctx) as client:
        blocked = client.get(world.judge.http_url + "/image.png")
        tunnelled = client.get(world.judge.https_url + "/image.png")
        page = client.get(world.judge.http_url + "/get")
    assert blocked.status_code == 403
    assert blocked.headers["x-squid-error"] == "ERR_ACCESS_DENIED 0"
    assert tunnelled.content == IMAGE_PNG  # CONNECT hides the content type from squid
    assert page.status_code == 200


def test_no_connect_squid_refuses_tunnels_with_403(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("squid-no-connect"), ctx) as client:
        with pytest.raises(httpx.ProxyError, match="403"):
            client.get(world.judge.https_url + "/health")
        assert client.get(world.judge.http_url + "/health").text == "ok"


def test_short_headers_squid_rejects_a_2kb_get_with_431(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("squid-short-headers"), ctx) as client:
        assert client.get(world.judge.http_url + "/long?q=short").text == "ok 13"
        r = client.get(world.judge.http_url + "/long?q=" + "a" * 2048)
    assert r.status_code == 431
    assert r.headers["x-squid-error"] == "ERR_TOO_BIG 0"


def test_only_the_banned_exit_gets_the_ban_page(world: World, ctx: ssl.SSLContext) -> None:
    ban_url = world.judge.https_url + "/recaptcha/api2/anchor?k=x"
    with via(world.by_name("squid-banned-exit"), ctx) as client:
        banned = client.get(ban_url)
    with via(world.by_name("squid-anonymous"), ctx) as client:
        fine = client.get(ban_url)
    assert banned.status_code == 302
    assert banned.headers["location"].startswith("https://www.google.com/sorry/index?continue=")
    assert fine.status_code == 200
    assert UNUSUAL_TRAFFIC not in fine.text


def test_tls_interceptor_forwards_http_but_fakes_tls(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("tls-interceptor"), ctx) as client:
        assert client.get(world.judge.http_url + "/health").text == "ok"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(world.judge.https_url + "/health")


# --- SOCKS proxies -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["microsocks", "microsocks-auth-right-password"])
def test_socks5_proxies_reach_the_judge_from_their_own_exit(world: World, ctx: ssl.SSLContext, name: str) -> None:
    proxy = world.by_name(name)
    with via(proxy, ctx) as client:
        assert client.get(world.judge.https_url + "/ip").json() == {"origin": proxy.egress}
        headers = client.get(world.judge.http_url + "/get").json()["headers"]
    assert "Via" not in headers and "X-Forwarded-For" not in headers


def test_socks5_wrong_password_fails_the_rfc1929_subnegotiation(world: World) -> None:
    proxy = world.by_name("microsocks-auth-wrong-password")
    with socket.create_connection(hostport(proxy.url), timeout=3) as sock:
        sock.sendall(b"\x05\x01\x02")  # version 5, one method: username/password
        assert sock.recv(2) == b"\x05\x02"
        user, password = b"socksuser", b"wrong-pass"
        sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        reply = sock.recv(2)
    assert reply[0] == 0x01 and reply[1] != 0x00


def socks4_request(proxy_url: str, dest: tuple[str, int], user: bytes = b"") -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(hostport(proxy_url), timeout=3)
    sock.sendall(b"\x04\x01" + struct.pack(">H", dest[1]) + socket.inet_aton(dest[0]) + user + b"\x00")
    reply = b""
    while len(reply) < 8 and (chunk := sock.recv(8 - len(reply))):
        reply += chunk
    return sock, reply


def test_pproxy_socks4_reaches_the_judge_from_its_own_exit(world: World) -> None:
    proxy = world.by_name("pproxy-socks4")
    sock, reply = socks4_request(proxy.url, judge_ip_port(world))
    with sock:
        assert reply[:2] == b"\x00\x5a"  # request granted
        sock.sendall(b"GET /ip?format=text HTTP/1.1\r\nHost: judge\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.endswith(b"\r\n\r\n" + proxy.egress.encode())


def test_socks4_ident_server_rejects_with_0x5d(world: World) -> None:
    sock, reply = socks4_request(world.by_name("socks4-ident-rejected").url, judge_ip_port(world), b"checker")
    sock.close()
    assert reply[:2] == b"\x00\x5d"


# --- faults ------------------------------------------------------------------------------------


def test_refused_port_resets_the_connect(world: World) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(hostport(world.by_name("refused").url), timeout=1).close()


def test_blackhole_connect_times_out(world: World) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        socket.create_connection(hostport(world.by_name("blackhole").url), timeout=0.5).close()
    assert time.monotonic() - started >= 0.45


@pytest.mark.parametrize(("name", "greeting"), [("silent-http", b"GET http://127.0.0.2/ HTTP/1.1\r\nHost: x\r\n\r\n"), ("silent-socks5", b"\x05\x01\x00")])
def test_silent_servers_accept_and_never_answer(world: World, name: str, greeting: bytes) -> None:
    with socket.create_connection(hostport(world.by_name(name).url), timeout=0.5) as sock:
        sock.sendall(greeting)
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_httpx_times_out_reading_from_the_silent_http_proxy(world: World, ctx: ssl.SSLContext) -> None:
    with via(world.by_name("silent-http"), ctx, timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.get(world.judge.http_url + "/get")

