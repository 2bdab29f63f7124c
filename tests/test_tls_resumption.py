"""TLS session resumption (transport.py rule 2) through real proxies, and what it must not hide.

The shared context offers a server the session it last issued to any of our connections; a
resumed handshake skips the certificate chain. These tests show it happens through a real squid
and a real SOCKS5 proxy (so the saving is real), and that a proxy intercepting TLS is still caught
after sessions for the very same host are held: it cannot resume a session the judge issued, so
it must present its own certificate, which fails verification.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

import pytest

from proxycheck import loop
from proxycheck.checker import Checker
from proxycheck.config import load_settings
from proxycheck.proxy import parse_proxy_url
from proxycheck.transport import shared_ssl_context
from proxycheck.wire import Session, Timeouts

pytestmark = pytest.mark.world


def fresh_context(world):
    return shared_ssl_context.__wrapped__(str(world.ca_file))  # not the process's cached one: no sessions yet


async def handshakes(proxy_url: str, url: str, ctx, times: int) -> list[bool]:
    """``times`` GETs of ``url``, each on a session (so a connection and a handshake) of its own."""
    resumed = []
    for _ in range(times):
        async with Session(parse_proxy_url(proxy_url), ctx, Timeouts(3, 3), "test") as http:
            response = await http.get(url)
            assert response.status == 200
            resumed.append(response.tls_resumed)
    return resumed


@pytest.mark.parametrize("name", ["squid-elite", "microsocks"])
def test_the_second_handshake_through_a_proxy_resumes(world, name):
    ctx = fresh_context(world)
    url = world.judge.https_url + "/health"
    assert loop.run(handshakes(world.by_name(name).url, url, ctx, 3)) == [False, True, True]
    assert list(ctx.sessions) == [urlsplit(url).hostname]


def test_a_session_from_a_handshake_that_failed_verification_is_not_kept(world):
    ctx = fresh_context(world)
    url = world.judge.https_url + "/health"

    async def through_interceptor():
        async with Session(parse_proxy_url(world.by_name("tls-interceptor").url), ctx, Timeouts(3, 3), "test") as http:
            await http.get(url)

    with pytest.raises(Exception, match="does not verify"):
        loop.run(through_interceptor())
    assert not ctx.sessions


def test_an_interceptor_is_caught_while_sessions_for_its_target_are_held(world):
    """The checker's own context: healthy squid checks first (so the judge's session is held and
    resumed), then the interceptor, then the squid again: 36 for the interceptor every time."""
    settings = load_settings(world.config_path)
    settings = dataclasses.replace(settings, timeouts=dataclasses.replace(settings.timeouts, connect=2, read=2))

    async def run():
        checker = Checker(settings)
        status = await checker.preflight()
        assert status.ok, status.reason
        verdicts = []
        for name in ["squid-elite", "squid-elite", "tls-interceptor", "squid-elite", "tls-interceptor"]:
            result = await checker.check(parse_proxy_url(world.by_name(name).url), status.own_ips)
            verdicts.append((name, result.healthy, result.reason, result.code))
        return checker.ssl_context, verdicts

    ctx, verdicts = loop.run(run())
    assert urlsplit(settings.targets.ssl_url).hostname in ctx.sessions
    assert verdicts == [
        ("squid-elite", True, None, None),
        ("squid-elite", True, None, None),
        ("tls-interceptor", False, "tls_intercepted", 36),
        ("squid-elite", True, None, None),
        ("tls-interceptor", False, "tls_intercepted", 36),
    ]
