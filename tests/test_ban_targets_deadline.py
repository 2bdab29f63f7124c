"""The ban probe under its one deadline: slow ban targets on distinct origins are fetched at once.

Real parts: an honest scripted HTTP proxy (``world.scripted``), real loopback HTTP servers as ban
targets that answer late or never, and the real wire session and probe runner. Before the fix the
targets were fetched one after another, so four targets answering in 1 s each took 4 s and the
proxy got ``read_timeout`` (27) from a 2.5 s probe deadline, with no ``targets`` fact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from world.scripted import Script, ScriptedProxy

from proxycheck import bans
from proxycheck.config import Settings
from proxycheck.probes import ban
from proxycheck.probes.base import ProbeContext, run_probe
from proxycheck.proxy import parse_proxy_url
from proxycheck.transport import shared_ssl_context
from proxycheck.wire import Session, Timeouts

HOST, EGRESS = "127.0.3.1", "127.0.3.250"
ANSWER_AFTER = 1.0  # seconds each slow target waits before answering


class _Target(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float | None) -> None:
        self.delay = delay  # None: no answer; the connection closes 3 s later (long after read = 1 s)
        self.done = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/recaptcha/api2/anchor"


class _Handler(BaseHTTPRequestHandler):
    server: _Target
    protocol_version = "HTTP/1.1"  # keep-alive, as real targets: a connection can serve again

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.server.delay is None:
            self.server.done.wait(3)
            self.close_connection = True
            return
        time.sleep(self.server.delay)
        body = b"<html>recaptcha anchor</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def targets(request) -> Iterator[list[_Target]]:
    servers = [_Target(delay) for delay in request.param]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield servers
    for s in servers:
        s.done.set()
        s.shutdown()
        s.server_close()


def _settings(servers: list[_Target], *, read: float, probe: float) -> Settings:
    s = Settings()
    ban_targets = tuple(bans.BanTarget(f"t{i}", srv.url, bans.PRESETS["recaptcha"], "recaptcha", f"ban[t{i}]")
                        for i, srv in enumerate(servers))
    return dataclasses.replace(s, targets=dataclasses.replace(s.targets, ban=ban_targets),
                               timeouts=dataclasses.replace(s.timeouts, read=read, probe=probe))


async def _run_ban(settings: Settings, *, open_first: str | None = None):
    """The ban probe through an honest proxy; ``open_first``: a URL the check's session fetched
    before (as earlier probes leave a connection open). Returns the outcome and the proxy's
    connection count."""
    async with ScriptedProxy(HOST, EGRESS, Script()) as proxy:
        url = parse_proxy_url(f"http://{HOST}:{proxy.port}")
        t = settings.timeouts
        ctx_ssl = shared_ssl_context(settings.targets.ca_file)
        async with Session(url, ctx_ssl, Timeouts(t.connect, t.read), "proxycheck-test") as http:
            if open_first:
                await http.get(open_first)
            ctx = ProbeContext(url, settings, frozenset(), http)
            return await run_probe(ban.SPEC, ctx), proxy.connections


@pytest.mark.parametrize("targets", [[ANSWER_AFTER] * 4], indirect=True)
def test_slow_targets_on_distinct_origins_share_the_deadline(targets):
    """4 × 1 s in sequence would pass the 2.5 s deadline; at once they take ~1 s."""
    outcome, connections = asyncio.run(_run_ban(_settings(targets, read=5.0, probe=2.5)))
    assert outcome.ok, (outcome.reason, outcome.detail)
    assert outcome.facts["targets"] == {f"t{i}": {"banned": False, "detail": "answered 200: not banned"} for i in range(4)}
    assert connections == 4  # one connection per origin, no more


@pytest.mark.parametrize("targets", [[0.0, None, 0.0]], indirect=True)
def test_a_stalled_target_is_the_verdict_within_read_not_the_whole_probe(targets):
    """The target that never answers fails the probe with read_timeout after ``read`` (its own
    phase deadline), naming its origin; the others' fetches do not wait behind it."""
    outcome, _ = asyncio.run(_run_ban(_settings(targets, read=1.0, probe=20.0)))
    assert (outcome.ok, outcome.reason, outcome.code) == (False, "read_timeout", 27)
    assert f"127.0.0.1:{targets[1].server_address[1]}" in outcome.detail
    assert outcome.facts.get("failed_phase") == "response_head"
    assert "within 1 s" in outcome.detail  # its read deadline, not the probe's 20 s


@pytest.mark.parametrize("targets", [[0.0, 0.0, 0.0]], indirect=True)
def test_the_checks_open_connection_serves_its_origin(targets):
    """An origin the check already holds a connection to is fetched on it, not on a second one."""
    outcome, connections = asyncio.run(_run_ban(_settings(targets, read=5.0, probe=10.0), open_first=targets[2].url))
    assert outcome.ok, (outcome.reason, outcome.detail)
    assert connections == 3
