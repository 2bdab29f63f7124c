"""36 (no long GET): a plain-HTTP GET whose request line is at least ``long_get_bytes`` long.

reCAPTCHA's image challenge URLs run to about 2,000 bytes; proxies with small request-line or
header limits (embedded boxes, misconfigured squids) reject them with 400/414/431. Through an
HTTP proxy the request line carries the absolute URL, so that is what we measure; through SOCKS
it is the origin-form path. The answer must be 200 and complete. (A 407 here is the wire's
``ProxyAuthFailed``, verdict 49, like every 407.)
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from ..target_spec import TargetSpec
from .base import Finding, ProbeContext, ProbeSpec, SelfTestContext, TargetCheck, fail, ok
from .selftest_fetch import fetch

PAD_PARAM = "pad"
FIX = "point [targets].long_get_url at a plain-HTTP URL that accepts long queries (a judge serves /long)"


@lru_cache(maxsize=8)
def long_url(base: str, min_request_line: int, *, absolute_form: bool) -> str:
    """``base`` plus a padding parameter so that ``GET <target> HTTP/1.1`` is long enough."""
    parts = urlsplit(base)
    sep = "&" if parts.query else "?"
    stub = base + sep + PAD_PARAM + "="
    target_len = len(stub) if absolute_form else len(stub) - len(f"{parts.scheme}://{parts.netloc}")
    overhead = len("GET  HTTP/1.1")
    pad = max(0, min_request_line - overhead - target_len)
    return stub + "x" * pad


async def run(ctx: ProbeContext) -> Finding:
    size = ctx.settings.probes.long_get_bytes
    response = await ctx.http.get(long_url(ctx.settings.targets.long_get_url, size, absolute_form=not ctx.tunnels))
    if response.status != 200:
        return fail("long_get_rejected", f"{ctx.who} answered {response.status} {response.reason} to a {size:,}-byte GET")
    return ok(f"a {size:,}-byte GET came back 200")


async def selftest(st: SelfTestContext) -> list[TargetCheck]:
    """The target, asked directly for the longest path a proxy will pass it (the absolute-form
    variant's), must answer 200."""
    base = st.settings.targets.long_get_url
    size = st.settings.probes.long_get_bytes
    response = await fetch(st, "long_get_url", long_url(base, size, absolute_form=True), FIX, shown=base)
    if isinstance(response, TargetCheck):
        return [response]
    if response.status != 200:
        return [TargetCheck("long_get_url", base, False,
                            f"{base} answered {response.status} to a {size:,}-byte GET, so every proxy would fail with 36", FIX)]
    return [TargetCheck("long_get_url", base, True, f"{base} answered 200 to a {size:,}-byte GET")]


SPEC = ProbeSpec("long_get", run, targets=(
    TargetSpec("long_get_url", "http://httpbin.org/get", "plain-HTTP URL that answers 200 to a long query string",
               ("http",), offline=("{http}/long",)),
), selftest=selftest)
