"""25 / 26: can we open a TCP connection to the proxy at all?

Runs first, on its own connection, so a refused or black-holed proxy is named as such instead
of surfacing as some later probe's timeout. It also resolves a host name once and keeps the IP
(anti-captcha wants an IP; see ``Proxy.address_warnings``).
"""

from __future__ import annotations

import asyncio
import socket
import time

from .base import Finding, ProbeContext, fail, ok


async def probe(ctx: ProbeContext) -> Finding:
    loop = asyncio.get_running_loop()
    host, port = ctx.proxy.host, ctx.proxy.port
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return fail("connect_unreachable", f"the proxy host {host!r} does not resolve ({exc.strerror})")
    ctx.resolved_ip = infos[0][4][0]
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ctx.settings.timeouts.connect):
            _, writer = await asyncio.open_connection(ctx.resolved_ip, port)
    except TimeoutError:
        return fail("connect_timeout", f"TCP connect to {ctx.who} timed out after {ctx.settings.timeouts.connect:g} s")
    connect_ms = (time.perf_counter() - started) * 1000
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return ok(f"TCP connect to {ctx.who} took {connect_ms:.0f} ms", connect_ms=round(connect_ms, 1), resolved_ip=ctx.resolved_ip)
