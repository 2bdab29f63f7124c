"""36 (no SSL): a CONNECT (or SOCKS) tunnel to the SSL target and a full, verified TLS handshake.

Verification uses the process's shared SSL context (system CAs + ``[targets].ca_file``), so a
proxy that substitutes the certificate is caught as ``tls_intercepted`` rather than passing.
Any complete HTTP answer from the target proves the tunnel works: the target's own status code
is not the proxy's doing. 407 on CONNECT becomes 49 in ``classify``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import Finding, ProbeContext, ok


async def probe(ctx: ProbeContext) -> Finding:
    url = ctx.settings.targets.ssl_url
    response = await ctx.client.get(url)
    await response.aread()
    tls = response.extensions.get("network_stream")
    version = None
    if tls is not None:
        ssl_object = tls.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else None
    target = urlsplit(url).netloc
    return ok(f"tunnel to {target} and TLS{(' (' + version + ')') if version else ''} verified; target answered {response.status_code}",
              tls_version=version, status=response.status_code)
