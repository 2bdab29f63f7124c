"""Every failure phase of the wire, driven by a real (scripted) proxy, through the real probes.

Each row: a proxy that behaves honestly except at one step, the probe that must fail, the reason
(and so the anti-captcha code) and the phase the wire names. Rows with no failure are the
rewrite's regressions: things a correct HTTP client must take in its stride. The judge and the
targets are the loopback world's (``world.config_path``).
"""

from __future__ import annotations

from pathlib import Path
import asyncio
import dataclasses
import ssl
from urllib.parse import urlsplit

import pytest
import trustme
from world.faults import Blackhole, RefusedPort
from world.scripted import (
    CountingRelay,
    Script,
    ScriptedProxy,
    chunked,
    cut_body,
    garbage_after_connect,
    interim_first,
    nth,
    only_for,
    replace_with,
    silence,
    split_head,
)

from proxycheck import loop
from proxycheck.checker import Checker
from proxycheck.config import load_settings
from proxycheck.probes import REGISTRY
from proxycheck.proxy import parse_proxy_url
from proxycheck.verdict import code_for
from proxycheck.wire import Session, Timeouts, WireError
from proxycheck.wire.errors import ALL, PHASES

HOST, EGRESS = "127.0.3.1", "127.0.3.250"


@dataclasses.dataclass
class Setup:
    """A row's proxy when a plain ``Script`` does not say it all.

    ``server``: a fault server class from tests/world/faults.py instead of a scripted proxy (the
    connect phase: no proxy software can refuse or drop a SYN on cue). ``bans_over_http``: the ban
    targets moved from the judge's TLS origin to its plain-HTTP one, so that a forwarding proxy
    sees, and can break, what would otherwise cross a tunnel it cannot read."""

    script: Script = dataclasses.field(default_factory=Script)
    server: type | None = None
    bans_over_http: bool = False


# (id, script, expected failing probe or None, reason, failed phase)
ROWS = [
    ("honest", Script(), None, None, None),
    ("connect-answered-http-1.0", Script(connect_answer=b"HTTP/1.0 200 Connection established\r\n\r\n"), None, None, None),
    ("no-keep-alive", Script(close_after_each=True), None, None, None),
    # keep-alive closed under the next request, without a byte of answer (tinyproxy's way): retried
    ("keep-alive-closed-after-1", Script(close_unanswered_after=1), None, None, None),
    ("keep-alive-closed-after-2", Script(close_unanswered_after=2), None, None, None),
    ("head-in-7-byte-segments", Script(response=split_head(7)), None, None, None),
    ("chunked-image", Script(response=only_for("image/", chunked)), None, None, None),
    ("chunked-everything", Script(response=chunked), None, None, None),
    ("100-continue-first", Script(response=interim_first), None, None, None),
    ("socks5-honest", Script(socks5=True), None, None, None),
    ("connect-refused", Setup(server=RefusedPort), "tcp_connect", "connect_refused", "connect"),
    ("connect-blackhole", Setup(server=Blackhole), "tcp_connect", "connect_timeout", "connect"),
    # Writing the request has no phase of its own (wire/errors.py says why): a proxy that resets
    # as soon as it accepts fails our write-then-read in response_head.
    ("reset-on-accept", Script(reset_on_accept=True), "anonymity", "connection_closed", "response_head"),
    ("connect-garbage", Script(connect_answer=b"SSH-2.0-OpenSSH_9.2 \r\n\r\n"), "ssl", "bad_response", "proxy_handshake"),
    ("connect-closed", Script(connect_answer=None), "ssl", "connection_closed", "proxy_handshake"),
    ("connect-403", Script(connect_answer=b"HTTP/1.1 403 Forbidden\r\n\r\n"), "ssl", "connect_rejected", "proxy_handshake"),
    ("connect-407", Script(connect_answer=b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"), "ssl", "auth_required",
     "proxy_auth"),
    ("tls-garbage", Script(after_connect=garbage_after_connect), "ssl", "tls_failed", "tls"),
    ("head-silence", Script(response=silence), "anonymity", "read_timeout", "response_head"),
    ("head-closed", Script(response=replace_with(None)), "anonymity", "connection_closed", "response_head"),
    ("closed-unanswered-on-a-fresh-connection", Script(close_unanswered_after=0), "anonymity", "connection_closed",
     "response_head"),
    ("head-garbage", Script(response=replace_with(b"HELLO WORLD\r\n\r\n")), "anonymity", "bad_response", "response_head"),
    ("body-cut", Script(response=cut_body(10)), "anonymity", "connection_closed", "body"),
    ("image-cut", Script(response=only_for("image/", cut_body(100))), "images", "image_corrupted", None),
    # the judge's /long answers text/plain, its ban page text/html: nothing else the probes fetch does
    ("long-get-body-cut", Script(response=only_for("text/plain", cut_body(2))), "long_get", "connection_closed", "body"),
    ("long-get-414", Script(response=only_for("text/plain", replace_with(b"HTTP/1.1 414 URI Too Long\r\nContent-Length: 0\r\n\r\n"))),
     "long_get", "long_get_rejected", None),
    ("ban-head-silence", Setup(Script(response=only_for("text/html", silence)), bans_over_http=True), "ban", "read_timeout",
     "response_head"),
    ("socks5-no-method", Script(socks5=True, socks5_greeting_reply=b"\x05\xff"), "anonymity", "auth_required", "proxy_auth"),
    ("socks5-bad-greeting", Script(socks5=True, socks5_greeting_reply=b"\x04\x00"), "anonymity", "bad_response",
     "proxy_handshake"),
    ("socks5-closed", Script(socks5=True, socks5_greeting_reply=None), "anonymity", "connection_closed", "proxy_handshake"),
    ("socks5-refused", Script(socks5=True, socks5_connect_reply=b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"), "anonymity",
     "connect_rejected", "proxy_handshake"),
]


@pytest.fixture(scope="module")
def settings(world):
    s = load_settings(world.config_path)
    return dataclasses.replace(s, timeouts=dataclasses.replace(s.timeouts, connect=0.5, read=0.5, probe=3.0))


def bans_on_plain_http(settings):
    """``settings`` with every ban target (``[[targets.ban]]`` or ``ban_url``) moved to the judge's
    plain-HTTP origin, which serves the same ban routes."""
    judge = urlsplit(settings.targets.judge_url)

    def move(url: str) -> str:
        return urlsplit(url)._replace(scheme=judge.scheme, netloc=judge.netloc).geturl()

    t = settings.targets
    moved = ({"ban": tuple(dataclasses.replace(b, url=move(b.url)) for b in t.ban)} if t.ban else {"ban_url": move(t.ban_url)})
    return dataclasses.replace(settings, targets=dataclasses.replace(t, **moved))


async def check(settings, script: Script | Setup, server_ssl: ssl.SSLContext | None = None):
    setup = script if isinstance(script, Setup) else Setup(script)
    if setup.bans_over_http:
        settings = bans_on_plain_http(settings)
    checker = Checker(settings)
    status = await checker.preflight()
    assert status.ok, status.reason
    if setup.server is not None:
        server = setup.server(HOST)
        server.start()
        try:
            return await checker.check(parse_proxy_url(f"http://{HOST}:{server.port}"), status.own_ips), None
        finally:
            server.stop()
    script = setup.script
    async with ScriptedProxy(HOST, EGRESS, script, server_ssl) as proxy:
        scheme = "socks5" if script.socks5 else ("https" if server_ssl else "http")
        result = await checker.check(parse_proxy_url(f"{scheme}://{HOST}:{proxy.port}"), status.own_ips)
        return result, proxy.connections


@pytest.mark.parametrize(("script", "probe", "reason", "phase"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_phase_maps_to_its_verdict(settings, script, probe, reason, phase):
    result, _ = loop.run(check(settings, script))
    failed = [p for p in result.probes if not p.ok and not p.skipped]
    if probe is None:
        assert result.healthy is True, [(p.name, p.reason, p.detail) for p in failed]
        assert result.exit_ip == EGRESS and result.anonymity == "elite"
        return
    assert (result.probe, result.reason, result.code) == (probe, reason, code_for(reason)), result.detail
    (outcome,) = failed
    assert outcome.facts.get("failed_phase") == phase, outcome.facts
    assert HOST in result.detail


def test_every_registered_probe_is_driven():
    """Every registered probe fails in some row above, so none is untested against a real server."""
    assert {r[2] for r in ROWS if r[2]} == {spec.name for spec in REGISTRY}


def test_every_phase_is_driven():
    """Every phase the wire names (``wire.errors.PHASES``) is some row's failed phase, and every
    error class belongs to one of those phases."""
    assert {r[4] for r in ROWS if r[4]} == set(PHASES)
    assert {cls.phase for cls in ALL} <= set(PHASES)


def test_no_keep_alive_opens_a_connection_per_request(settings):
    _, keep_alive = loop.run(check(settings, Script()))
    _, closing = loop.run(check(settings, Script(close_after_each=True)))
    # honest: tcp_connect's connection, the spare, is the one plain keep-alive connection, + one tunnel.
    # Closing after each forwarded response: one connection per plain GET (judge on the spare, long
    # GET, http image); the tunnel is the origin's business and stays one.
    assert keep_alive == 1 + 1
    assert closing == 3 + 1


HEAD_ONLY = b"HTTP/1.1 200 OK\r\n"  # a start of an answer, then the close
# (id, script, GETs sent, what each GET gives, connections the proxy accepted): wire/session.py rule 6
KEEP_ALIVE_ROWS = [
    ("honest", Script(), 3, [200, 200, 200], 1),
    ("closed-after-1-retried", Script(close_unanswered_after=1), 3, [200, 200, 200], 3),
    ("closed-after-2-retried", Script(close_unanswered_after=2), 5, [200] * 5, 3),
    ("fresh-connection-not-retried", Script(close_unanswered_after=0), 1,
     ["ConnectionClosed: closed the connection without answering"], 1),
    ("retry-fails-too-not-retried-again", Script(close_unanswered_after=1, response=nth(2, replace_with(None))), 2,
     [200, "ConnectionClosed: closed the connection without answering"], 2),
    ("bytes-arrived-not-retried", Script(response=nth(2, replace_with(HEAD_ONLY))), 2,
     [200, "ConnectionClosed: closed the connection in the middle of the response head"], 1),
    ("timeout-not-retried", Script(response=nth(2, silence)), 2,
     [200, "ResponseTimeout: accepted the connection but sent no answer to {judge} within 0.5 s"], 1),
]


@pytest.mark.parametrize(("script", "gets", "outcomes", "connections"), [r[1:] for r in KEEP_ALIVE_ROWS],
                         ids=[r[0] for r in KEEP_ALIVE_ROWS])
def test_a_kept_alive_connection_closed_unanswered_is_retried_once(settings, script, gets, outcomes, connections):
    """A GET on a reused connection that ends before any byte of answer goes once more on a new
    connection; a fresh connection's failure, a second failure, a started answer and a timeout count."""
    seen, accepted = gets_through(settings, script, [settings.targets.judge_url] * gets)
    assert seen == expected(outcomes, settings) and accepted == connections


def gets_through(settings, script: Script, urls: list[str], *, tcp_check: bool = False) -> tuple[list[int | str], int]:
    """GET each URL in turn on one Session through a ScriptedProxy (after ``tcp_check``, if asked):
    each answer's status or the error's class and wording, and the connections the proxy accepted."""

    async def run():
        ctx = ssl.create_default_context(cafile=settings.targets.ca_file)
        async with ScriptedProxy(HOST, EGRESS, script) as proxy:
            seen: list[int | str] = []
            async with Session(parse_proxy_url(f"http://{HOST}:{proxy.port}"), ctx, Timeouts(0.5, 0.5), "test") as http:
                if tcp_check:
                    await http.tcp_check()
                for url in urls:
                    try:
                        seen.append((await http.get(url)).status)
                    except WireError as exc:
                        seen.append(f"{type(exc).__name__}: {exc}")
            return seen, proxy.connections

    return loop.run(run())


def expected(outcomes: list[int | str], settings) -> list[int | str]:
    judge = urlsplit(settings.targets.judge_url).netloc
    return [o.format(judge=judge) if isinstance(o, str) else o for o in outcomes]


def test_an_https_proxy_carries_tls_inside_tls(settings, tmp_path):
    """``https://`` proxy: TLS to the proxy, then CONNECT and the target's TLS inside it (TLS-in-TLS)."""
    ca = trustme.CA()
    bundle = tmp_path / "both.pem"
    bundle.write_bytes(Path(settings.targets.ca_file).read_bytes() + ca.cert_pem.bytes())
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server_ssl)
    trusting = dataclasses.replace(settings, targets=dataclasses.replace(settings.targets, ca_file=str(bundle)))
    result, _ = loop.run(check(trusting, Script(), server_ssl))
    assert result.healthy is True, result.detail
    ssl_probe = next(p for p in result.probes if p.name == "ssl")
    assert {"proxy_handshake", "tls"} <= set(ssl_probe.phases)
    assert ssl_probe.facts["tls_version"].startswith("TLSv1")


def test_an_https_proxy_with_an_untrusted_certificate(settings):
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert(HOST).configure_cert(server_ssl)
    result, _ = loop.run(check(settings, Script(), server_ssl))
    assert (result.probe, result.reason) == ("anonymity", "tls_failed")  # not an interception: its own cert
    assert "presented its own certificate that does not verify" in result.detail


# -- the spare: tcp_connect's connection carries the judge's GET (wire/session.py rules 1, 4, 6) ----

SPARE_CHECKS = 50


def test_a_check_opens_one_connection_fewer_to_real_squid(world, settings):
    """squid (real software, behind a relay that counts what it accepts) gets two connections a
    check where it got three: the judge's GET goes out on tcp_connect's connection, which carries
    the plain GETs after it, and the tunnel. The anonymity probe has no connect phase of its own,
    and ``latency_ms`` still counts the connect tcp_connect timed: a connect and a GET."""
    squid = urlsplit(world.by_name("squid-elite").url)

    async def run():
        checker = Checker(settings)
        status = await checker.preflight()
        assert status.ok, status.reason
        async with CountingRelay(HOST, (squid.hostname, squid.port)) as relay:
            results = []
            for _ in range(5):
                before = relay.connections
                result = await checker.check(parse_proxy_url(f"http://{HOST}:{relay.port}"), status.own_ips)
                results.append((result, relay.connections - before))
            return results

    for result, accepted in loop.run(run()):
        assert result.healthy is True, result.detail
        assert accepted == 1 + 1
        probes = {p.name: p for p in result.probes}
        assert set(probes["tcp_connect"].phases) == {"connect"}
        assert set(probes["anonymity"].phases) == {"ttfb", "transfer"}
        spent = probes["anonymity"].elapsed_ms + probes["tcp_connect"].phases["connect"]
        assert result.latency_ms == pytest.approx(spent, abs=1.0)


@pytest.mark.parametrize("when", ["accept", "request"])
def test_a_spare_closed_unanswered_blames_no_proxy(settings, when):
    """A proxy that closes tcp_connect's connection without answering, right after accepting it or
    as the judge's GET arrives (an idle or accept-time limit on a connection that has carried no
    request), is healthy in every check: the spare counts as reused, so the GET goes once more on
    a new connection (rule 6). No probe fails even once, so the checker has nothing to confirm."""

    async def run():
        checker = Checker(settings)
        status = await checker.preflight()
        assert status.ok, status.reason
        confirmed: list[str] = []
        confirm = checker._confirm

        async def counted(spec, ctx):
            confirmed.append(spec.name)
            return await confirm(spec, ctx)

        checker._confirm = counted
        results, unanswered = [], 0
        for _ in range(SPARE_CHECKS):
            async with ScriptedProxy(HOST, EGRESS, Script(close_first=when)) as proxy:
                results.append(await checker.check(parse_proxy_url(f"http://{HOST}:{proxy.port}"), status.own_ips))
            unanswered += proxy.unanswered
        return results, confirmed, unanswered

    results, confirmed, unanswered = loop.run(run())
    assert [(r.probe, r.reason, r.detail) for r in results if r.healthy is not True] == []
    assert confirmed == []
    assert all(r.exit_ip == EGRESS for r in results)
    if when == "request":
        assert unanswered == SPARE_CHECKS  # every check's GET met the close, and was sent again
        for r in results:
            anonymity = next(p for p in r.probes if p.name == "anonymity")
            assert "connect" in anonymity.phases  # the new connection's: only the connect timed once counts
            assert r.latency_ms == anonymity.elapsed_ms


# (id, script, first URL, what each of three GETs gives, connections the proxy accepted)
SPARE_ROWS = [
    ("honest", Script(), "judge", [200, 200, 200], 1),
    ("closed-at-accept-retried", Script(close_first="accept"), "judge", [200, 200, 200], 2),
    ("closed-under-the-request-retried", Script(close_first="request"), "judge", [200, 200, 200], 2),
    ("retry-fails-too-not-retried-again", Script(close_first="request", response=nth(1, replace_with(None))), "judge",
     ["ConnectionClosed: closed the connection without answering", 200, 200], 3),
    ("bytes-arrived-not-retried", Script(response=nth(1, replace_with(HEAD_ONLY))), "judge",
     ["ConnectionClosed: closed the connection in the middle of the response head", 200, 200], 2),
    ("timeout-not-retried", Script(response=nth(1, silence)), "judge",
     ["ResponseTimeout: accepted the connection but sent no answer to {judge} within 0.5 s", 200, 200], 2),
    # a CONNECT first: the spare is closed unused, the tunnel is a connection of its own
    ("connect-first-closes-the-spare", Script(), "ssl", [200, 200, 200], 3),
]


@pytest.mark.parametrize(("script", "first", "outcomes", "connections"), [r[1:] for r in SPARE_ROWS],
                         ids=[r[0] for r in SPARE_ROWS])
def test_the_spare_is_a_reused_connection(settings, script, first, outcomes, connections):
    """After ``tcp_check``, a GET on the spare that ends before any byte of answer goes once more
    on a new connection; a second failure, a started answer and a timeout count (rule 6)."""
    judge_url = settings.targets.judge_url
    urls = [settings.targets.ssl_url if first == "ssl" else judge_url, judge_url, judge_url]
    seen, accepted = gets_through(settings, script, urls, tcp_check=True)
    assert seen == expected(outcomes, settings) and accepted == connections


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_an_unused_spare_is_closed(settings, scheme):
    """``close()`` closes a spare no request took; through SOCKS ``tcp_check`` keeps none. The
    proxy sees the connection end either way (nothing left for a ResourceWarning)."""

    async def run():
        ctx = ssl.create_default_context(cafile=settings.targets.ca_file)
        async with ScriptedProxy(HOST, EGRESS, Script(socks5=scheme == "socks5")) as proxy:
            http = Session(parse_proxy_url(f"{scheme}://{HOST}:{proxy.port}"), ctx, Timeouts(0.5, 0.5), "test")
            await http.tcp_check()
            await asyncio.sleep(0.05)
            held = http.spare_connect_ms, bool(proxy._tasks)
            http.close()
            for _ in range(100):
                if not proxy._tasks:
                    break
                await asyncio.sleep(0.01)
            return held, bool(proxy._tasks), proxy.connections

    (spare_ms, open_before), open_after, accepted = loop.run(run())
    assert spare_ms == 0.0  # no request took it
    assert (open_before, open_after, accepted) == (scheme == "http", False, 1)
