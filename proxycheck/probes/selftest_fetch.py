"""The self-test's one fetch: a direct GET whose failure is a ``TargetCheck`` naming the key and the fix.

Probes' ``selftest`` functions call ``fetch`` and then judge the answer as their probe would.
Catching here is the self-test's job (a target we cannot reach is *our* trouble, reported as
such); probes themselves never catch.
"""

from __future__ import annotations

from ..wire import Response, WireError, parse_target
from ..wire.errors import TLSIntercepted
from .base import SelfTestContext, TargetCheck


async def fetch(st: SelfTestContext, key: str, url: str, fix: str, *, shown: str | None = None, **kw) -> Response | TargetCheck:
    shown = shown or url
    try:
        return await st.http.get(url, **kw)
    except WireError as exc:
        if isinstance(exc, TLSIntercepted):  # directly, nobody intercepts: it is our trust store
            why = getattr(exc.__cause__, "verify_message", None) or "unknown reason"
            fix = f"set [targets].ca_file to the CA that signed {parse_target(url).host}'s certificate"
            return TargetCheck(key, shown, False, f"cannot reach {shown} directly: its certificate does not verify ({why})", fix)
        return TargetCheck(key, shown, False, f"cannot reach {shown} directly: it {exc}", fix)
