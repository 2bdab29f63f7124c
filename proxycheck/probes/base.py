"""What every probe shares: its context, its answer, and the one runner that times it.

Rules:
1. A probe is ``async def probe(ctx: ProbeContext) -> Finding``. It returns ``ok()`` or
   ``fail(reason, detail)``; it may raise whatever the network raises.
2. ``run_probe`` is the only place that owns the deadline, the timing and the translation of
   exceptions into verdicts (``classify.py``). No probe can hang: the whole probe runs under
   ``asyncio.timeout(settings.timeouts.probe)`` (httpcore/python-socks handshakes included).
3. An exception that ``classify`` does not recognise is *our* bug: the outcome is
   ``internal_error`` with the traceback logged, never a silent "proxy dead".
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..config import Settings
from ..proxy import Proxy
from ..result import ProbeOutcome
from ..verdict import INTERNAL_ERROR, code_for
from .classify import classify_exception

log = logging.getLogger("proxycheck.probes")


@dataclass(frozen=True)
class Finding:
    ok: bool
    reason: str | None = None
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


def ok(detail: str = "", **facts: Any) -> Finding:
    return Finding(True, None, detail, facts)


def fail(reason: str, detail: str, **facts: Any) -> Finding:
    code_for(reason)  # an unknown reason is our bug: fail loudly here, not in storage
    return Finding(False, reason, detail, facts)


@dataclass
class ProbeContext:
    """One proxy's check: the proxy, the settings, the clients, and facts probes pass on."""

    proxy: Proxy
    settings: Settings
    ssl_context: ssl.SSLContext
    own_ips: frozenset[str]
    client: httpx.AsyncClient
    resolved_ip: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def who(self) -> str:
        """How details name the proxy: ``squid at 127.0.1.3:3128`` style, never with a password."""
        kind = {"http": "HTTP proxy", "https": "HTTPS proxy"}.get(self.proxy.scheme, self.proxy.scheme.upper() + " proxy")
        return f"{kind} {self.proxy.address}"

    @property
    def tunnels(self) -> bool:
        """SOCKS proxies tunnel everything; HTTP proxies forward plain-HTTP requests."""
        return self.proxy.scheme.startswith("socks")

    @property
    def timeout_text(self) -> str:
        return f"{self.settings.timeouts.read:g} s"


Probe = Callable[[ProbeContext], Awaitable[Finding]]


async def run_probe(name: str, probe: Probe, ctx: ProbeContext) -> ProbeOutcome:
    deadline = ctx.settings.timeouts.probe
    started = time.perf_counter()
    try:
        async with asyncio.timeout(deadline):
            finding = await probe(ctx)
    except TimeoutError as exc:
        if type(exc) is TimeoutError:  # our deadline; python-socks raises a subclass of its own
            finding = fail("read_timeout", f"{ctx.who} gave no answer within the {deadline:g} s probe deadline")
        else:
            finding = _classified(exc, ctx, name)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every exception becomes a verdict or internal_error
        finding = _classified(exc, ctx, name)
    elapsed = (time.perf_counter() - started) * 1000
    if finding.ok:
        return ProbeOutcome(name, True, None, None, finding.detail, elapsed, facts=finding.facts)
    if finding.reason == INTERNAL_ERROR:
        return ProbeOutcome(name, False, None, INTERNAL_ERROR, finding.detail, elapsed)
    return ProbeOutcome(name, False, code_for(finding.reason), finding.reason, finding.detail, elapsed, facts=finding.facts)


def _classified(exc: BaseException, ctx: ProbeContext, name: str) -> Finding:
    verdict = classify_exception(exc, ctx.who, ctx.timeout_text, has_credentials=ctx.proxy.username is not None)
    if verdict is None:
        log.error("probe %s on %s raised an unexpected error", name, ctx.proxy.masked_url, exc_info=exc)
        return Finding(False, INTERNAL_ERROR, f"internal error in probe {name}: {type(exc).__name__}: {exc}")
    reason, detail = verdict
    return fail(reason, detail)


def skipped(name: str, because: str) -> ProbeOutcome:
    return ProbeOutcome(name, False, None, None, f"not run: {because}", 0.0, skipped=True)
