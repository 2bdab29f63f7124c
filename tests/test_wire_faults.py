"""Every failure phase of the wire, driven by a real (scripted) proxy, through the real probes.

Each row: a proxy that behaves honestly except at one step, the probe that must fail, the reason
(and so the anti-captcha code) and the phase the wire names. Rows with no failure are the
rewrite's regressions: things a correct HTTP client must take in its stride. The judge and the
targets are the loopback world's (``world.config_path``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import dataclasses
import ssl

import pytest
import trustme
from world.scripted import (
    Script,
    ScriptedProxy,
    chunked,
    cut_body,
    garbage_after_connect,
    interim_first,
    only_for,
    replace_with,
    silence,
    split_head,
)

from proxycheck.checker import Checker
from proxycheck.config import load_settings
from proxycheck.probes import REGISTRY
from proxycheck.proxy import parse_proxy_url
from proxycheck.verdict import code_for

HOST, EGRESS = "127.0.3.1", "127.0.3.250"

# (id, script, expected failing probe or None, reason, failed phase)
ROWS = [
    ("honest", Script(), None, None, None),
    ("connect-answered-http-1.0", Script(connect_answer=b"HTTP/1.0 200 Connection established\r\n\r\n"), None, None, None),
    ("no-keep-alive", Script(close_after_each=True), None, None, None),
    ("head-in-7-byte-segments", Script(response=split_head(7)), None, None, None),
    ("chunked-image", Script(response=only_for("image/", chunked)), None, None, None),
    ("chunked-everything", Script(response=chunked), None, None, None),
    ("100-continue-first", Script(response=interim_first), None, None, None),
    ("socks5-honest", Script(socks5=True), None, None, None),
    ("connect-garbage", Script(connect_answer=b"SSH-2.0-OpenSSH_9.2 \r\n\r\n"), "ssl", "bad_response", "proxy_handshake"),
    ("connect-closed", Script(connect_answer=None), "ssl", "connection_closed", "proxy_handshake"),
    ("connect-403", Script(connect_answer=b"HTTP/1.1 403 Forbidden\r\n\r\n"), "ssl", "connect_rejected", "proxy_handshake"),
    ("connect-407", Script(connect_answer=b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"), "ssl", "auth_required",
     "proxy_auth"),
    ("tls-garbage", Script(after_connect=garbage_after_connect), "ssl", "tls_failed", "tls"),
    ("head-silence", Script(response=silence), "anonymity", "read_timeout", "response_head"),
    ("head-closed", Script(response=replace_with(None)), "anonymity", "connection_closed", "response_head"),
    ("head-garbage", Script(response=replace_with(b"HELLO WORLD\r\n\r\n")), "anonymity", "bad_response", "response_head"),
    ("body-cut", Script(response=cut_body(10)), "anonymity", "connection_closed", "body"),
    ("image-cut", Script(response=only_for("image/", cut_body(100))), "images", "image_corrupted", None),
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
    return dataclasses.replace(s, timeouts=dataclasses.replace(s.timeouts, read=0.5, probe=3.0))


async def check(settings, script: Script, server_ssl: ssl.SSLContext | None = None):
    checker = Checker(settings)
    status = await checker.preflight()
    assert status.ok, status.reason
    async with ScriptedProxy(HOST, EGRESS, script, server_ssl) as proxy:
        scheme = "socks5" if script.socks5 else ("https" if server_ssl else "http")
        result = await checker.check(parse_proxy_url(f"{scheme}://{HOST}:{proxy.port}"), status.own_ips)
        return result, proxy.connections


@pytest.mark.parametrize(("script", "probe", "reason", "phase"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_phase_maps_to_its_verdict(settings, script, probe, reason, phase):
    result, _ = asyncio.run(check(settings, script))
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
    """Every probe that fetches something fails in some row above (tcp_connect: the world's refused
    and blackhole rows), so none is untested against a real server."""
    failing = {r[2] for r in ROWS if r[2]}
    assert failing | {"tcp_connect", "long_get", "ban"} == {spec.name for spec in REGISTRY}


def test_no_keep_alive_opens_a_connection_per_request(settings):
    _, keep_alive = asyncio.run(check(settings, Script()))
    _, closing = asyncio.run(check(settings, Script(close_after_each=True)))
    # honest: tcp_connect + one plain keep-alive connection + one tunnel. Closing after each forwarded
    # response: one connection per plain GET (judge, long GET, http image); the tunnel is the origin's
    # business and stays one.
    assert keep_alive == 1 + 1 + 1
    assert closing == 1 + 3 + 1


def test_an_https_proxy_carries_tls_inside_tls(settings, tmp_path):
    """``https://`` proxy: TLS to the proxy, then CONNECT and the target's TLS inside it (TLS-in-TLS)."""
    ca = trustme.CA()
    bundle = tmp_path / "both.pem"
    bundle.write_bytes(Path(settings.targets.ca_file).read_bytes() + ca.cert_pem.bytes())
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server_ssl)
    trusting = dataclasses.replace(settings, targets=dataclasses.replace(settings.targets, ca_file=str(bundle)))
    result, _ = asyncio.run(check(trusting, Script(), server_ssl))
    assert result.healthy is True, result.detail
    ssl_probe = next(p for p in result.probes if p.name == "ssl")
    assert {"proxy_handshake", "tls"} <= set(ssl_probe.phases)
    assert ssl_probe.facts["tls_version"].startswith("TLSv1")


def test_an_https_proxy_with_an_untrusted_certificate(settings):
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert(HOST).configure_cert(server_ssl)
    result, _ = asyncio.run(check(settings, Script(), server_ssl))
    assert (result.probe, result.reason) == ("anonymity", "tls_failed")  # not an interception: its own cert
    assert "presented its own certificate that does not verify" in result.detail
