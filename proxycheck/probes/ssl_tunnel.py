"""36 (no SSL): a CONNECT (or SOCKS) tunnel to the SSL target and a full, verified TLS handshake.

Verification uses the process's shared SSL context (system CAs + ``[targets].ca_file``), so a
proxy that substitutes the certificate is caught as ``tls_intercepted`` rather than passing.
Any complete HTTP answer from the target proves the tunnel works: the target's own status code
is not the proxy's doing. A 407 to CONNECT is the wire's ``ProxyAuthFailed`` (49).
"""

from __future__ import annotations

from ..target_spec import TargetSpec
from .base import Finding, ProbeContext, ProbeSpec, SelfTestContext, TargetCheck, ok
from .selftest_fetch import fetch

FIX = "point [targets].ssl_url at a reachable HTTPS URL (a judge started with --tls-listen serves /health)"


async def run(ctx: ProbeContext) -> Finding:
    url = ctx.settings.targets.ssl_url
    response = await ctx.http.get(url)
    version = response.tls_version
    target = url.split("//", 1)[1].split("/", 1)[0]
    return ok(f"tunnel to {target} and TLS{(' (' + version + ')') if version else ''} verified; target answered {response.status}",
              tls_version=version, status=response.status)


async def selftest(st: SelfTestContext) -> list[TargetCheck]:
    """The SSL target, asked directly: a verified TLS handshake and a complete answer."""
    url = st.settings.targets.ssl_url
    response = await fetch(st, "ssl_url", url, FIX)
    if isinstance(response, TargetCheck):
        return [response]
    return [TargetCheck("ssl_url", url, True, f"{url} answered {response.status} over {response.tls_version}")]


SPEC = ProbeSpec("ssl", run, targets=(
    TargetSpec("ssl_url", "https://www.google.com/generate_204", "HTTPS URL fetched through a CONNECT tunnel (TLS verified)",
               ("https",), offline=("{https}/health",)),
), selftest=selftest, rate_limited=True)
