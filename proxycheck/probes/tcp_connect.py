"""25 / 26: can we open a TCP connection to the proxy at all?

Runs first, on a connection of its own making, so a refused or black-holed proxy is named as
such instead of surfacing as some later probe's timeout. Through an ``http://`` proxy the check
keeps that connection as its spare, and the judge's forwarded GET goes out on it (no second
connect: ``wire.session`` rules 1, 4 and 6); otherwise it is closed at once. It also resolves a
host name once and keeps the IP (anti-captcha wants an IP; see ``Proxy.address_warnings``). It
needs no target.
"""

from __future__ import annotations

from .base import Finding, ProbeContext, ProbeSpec, ok


async def run(ctx: ProbeContext) -> Finding:
    ctx.resolved_ip = await ctx.http.tcp_check()
    connect_ms = ctx.http.timings.get("connect", 0.0)
    return ok(f"TCP connect to {ctx.who} took {connect_ms:.0f} ms", connect_ms=round(connect_ms, 1), resolved_ip=ctx.resolved_ip)


SPEC = ProbeSpec("tcp_connect", run)
