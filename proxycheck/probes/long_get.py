"""36 (no long GET): a plain-HTTP GET whose request line is at least ``long_get_bytes`` long.

reCAPTCHA's image challenge URLs run to about 2,000 bytes; proxies with small request-line or
header limits (embedded boxes, misconfigured squids) reject them with 400/414/431. Through an
HTTP proxy the request line carries the absolute URL, so that is what we measure; through SOCKS
it is the origin-form path. The answer must be 200 and complete.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

import httpx

from .base import Finding, ProbeContext, fail, ok

PAD_PARAM = "pad"


def long_url(base: str, min_request_line: int, *, absolute_form: bool) -> str:
    """``base`` plus a padding parameter so that ``GET <target> HTTP/1.1`` is long enough."""
    parts = urlsplit(base)
    sep = "&" if parts.query else "?"
    stub = base + sep + PAD_PARAM + "="
    target_len = len(stub) if absolute_form else len(stub) - len(f"{parts.scheme}://{parts.netloc}")
    overhead = len("GET  HTTP/1.1")
    pad = max(0, min_request_line - overhead - target_len)
    return stub + "x" * pad


@lru_cache(maxsize=8)
def _parsed_long_url(base: str, size: int, absolute_form: bool) -> httpx.URL:
    """Parsed once per process: httpx validates a URL character by character, and for a 2 KB
    URL that was the largest single CPU cost of a check (bench/README.md)."""
    return httpx.URL(long_url(base, size, absolute_form=absolute_form))


async def probe(ctx: ProbeContext) -> Finding:
    size = ctx.settings.probes.long_get_bytes
    url = _parsed_long_url(ctx.settings.targets.long_get_url, size, not ctx.tunnels)
    response = await ctx.client.get(url)
    await response.aread()
    if response.status_code == 407:
        return fail("auth_rejected", f"{ctx.who} answered 407 to a {size:,}-byte GET after accepting a short one")
    if response.status_code != 200:
        return fail("long_get_rejected", f"{ctx.who} answered {response.status_code} {response.reason_phrase} to a {size:,}-byte GET")
    return ok(f"a {size:,}-byte GET came back 200")
