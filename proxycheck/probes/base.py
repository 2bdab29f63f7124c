"""What every probe shares: its spec, its context, its answer, and the one runner that times it.

Rules:
1. A probe is ``async def run(ctx: ProbeContext) -> Finding``. It returns ``ok()`` or
   ``fail(reason, detail)`` for what it *sees* (a status, a body, a header), and never catches:
   whatever the wire raises propagates to ``run_probe``.
2. ``run_probe`` is the only place that owns the deadline, the timing and the translation of
   exceptions into verdicts (``classify.VERDICTS``, keyed by exception type). No probe can hang:
   the whole probe runs under ``asyncio.timeout(settings.timeouts.probe)``, and every phase
   on the wire has its own deadline too (``wire.session``).
3. An exception the table does not know is *our* bug: the outcome is ``internal_error`` with the
   traceback logged, never a silent "proxy dead".
4. A probe's spec (``ProbeSpec``) says which ``[targets]`` it uses, what it adds to the result's
   summary, how the checker's self-test asks those targets what the probe will ask them, how
   often it needs to run (``every``, ``jitter``) and whether its targets are rate-limited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..proxy import Proxy
from ..result import ProbeOutcome
from ..verdict import INTERNAL_ERROR, code_for
from ..target_spec import TargetSpec
from ..wire import Session
from .classify import classify_exception

log = logging.getLogger("proxycheck.probes")

class Settings(Protocol):
    """What a probe reads of ``config.Settings`` (typed here so the probes never import the
    config: the config builds its ``[targets]`` from the probes' specs)."""

    @property
    def targets(self) -> Any: ...
    @property
    def timeouts(self) -> Any: ...
    @property
    def probes(self) -> Any: ...


# What a probe may add to a CheckResult's summary (``ProbeSpec.summary``).
SUMMARY_FIELDS = frozenset({"exit_ip", "anonymity", "latency_ms", "detail", "targets"})


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
    """One proxy's check: the proxy, the settings, the wire session, and facts probes pass on."""

    proxy: Proxy
    settings: Settings
    own_ips: frozenset[str]
    http: Session
    resolved_ip: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    # What the checker knows of the targets (its latest self-test, or a control request made for
    # this check: checker.py rule 6): the judges that answer us, in config order (the anonymity
    # probe asks the first), and the ban targets that answer us as they would a banned exit,
    # by name -> why (their verdict is unknown for every proxy).
    judges: tuple[str, ...] = ()
    cannot_judge: dict[str, str] = field(default_factory=dict)

    @property
    def who(self) -> str:
        """How details name the proxy: ``HTTP proxy 127.0.1.3:3128`` style, never with a password."""
        return who(self.proxy)

    @property
    def tunnels(self) -> bool:
        """SOCKS proxies tunnel everything; HTTP proxies forward plain-HTTP requests."""
        return self.proxy.scheme.startswith("socks")


def who(proxy: Proxy) -> str:
    kind = {"http": "HTTP proxy", "https": "HTTPS proxy"}.get(proxy.scheme, proxy.scheme.upper() + " proxy")
    return f"{kind} {proxy.address}"


# -- the self-test side of a probe ---------------------------------------------------------------


@dataclass(frozen=True)
class TargetCheck:
    """The self-test's finding on one ``[targets]`` entry (``image_urls[1]`` for a list item)."""

    key: str
    url: str
    ok: bool
    found: str  # OK: what it is; not OK: what is wrong
    fix: str = ""
    facts: dict[str, Any] = field(default_factory=dict, compare=False)
    # False: the target is down but another one does its job (a second judge is up), so the
    # checker is not degraded by it; it is still named in doctor and status.
    needed: bool = True
    # False: the target answers our own direct request as it answers a banned exit (a ban
    # answer, a 5xx, an error): it cannot tell callers apart, so it cannot judge any proxy.
    judges: bool = True


@dataclass
class SelfTestContext:
    """A direct session (no proxy) and the settings: what a probe's ``selftest`` gets."""

    settings: Settings
    http: Session


Probe = Callable[[ProbeContext], Awaitable[Finding]]
SelfTest = Callable[[SelfTestContext], Awaitable[list[TargetCheck]]]


@dataclass(frozen=True)
class ProbeSpec:
    """One failure family. ``targets``: the ``[targets]`` keys the probe fetches, declared as data
    (``target_spec.TargetSpec``: the config, its reference and the offline judge's targets are
    built from them). ``summary``: the CheckResult fields it fills (from its facts; ``latency_ms``
    is its own elapsed time, plus the TCP connect of tcp_connect's spare when its GET went out on
    it: a connect and a request either way; ``detail`` its wording when the proxy is healthy).
    ``selftest``: asks each of those targets, directly, what ``run`` will ask it through a proxy;
    None when the probe needs no target."""

    name: str
    run: Probe
    targets: tuple[TargetSpec, ...] = ()
    summary: tuple[str, ...] = ()
    selftest: SelfTest | None = None
    # How often it needs to run (probes/schedule.py): seconds between runs on one proxy (0: every
    # check; ``[probes.<name>].every`` overrides), and the fraction of that by which a run may
    # come early so proxies spread out.
    every: float = 0.0
    jitter: float = 0.0
    # Its targets are a captcha provider's hosts: ``[probes].max_requests_per_host`` applies.
    rate_limited: bool = False

    # The ``[targets]`` keys, in order (derived from ``targets`` once: the checker reads them per check).
    target_keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_keys", tuple(t.key for t in self.targets))
        unknown = set(self.summary) - SUMMARY_FIELDS
        if unknown:
            raise ValueError(f"probe {self.name}: unknown summary fields {sorted(unknown)}")


# -- the runner ----------------------------------------------------------------------------------


async def run_probe(spec: ProbeSpec, ctx: ProbeContext) -> ProbeOutcome:
    deadline = ctx.settings.timeouts.probe
    name = spec.name
    ctx.http.timings = timings = {}
    ctx.http.spare_connect_ms = 0.0
    started = time.perf_counter()
    try:
        async with asyncio.timeout(deadline):
            finding = await spec.run(ctx)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every exception becomes a verdict or internal_error
        finding = _classified(exc, ctx, name, deadline)
    elapsed = (time.perf_counter() - started) * 1000
    phases = {k: round(v, 2) for k, v in timings.items()}
    facts = finding.facts
    if finding.ok:
        if "latency_ms" in spec.summary:  # a GET on tcp_check's spare still counts its connect (wire.session rule 4)
            facts = {**facts, "latency_ms": elapsed + ctx.http.spare_connect_ms}
        return ProbeOutcome(name, True, None, None, finding.detail, elapsed, facts=facts, phases=phases)
    if finding.reason == INTERNAL_ERROR:
        return ProbeOutcome(name, False, None, INTERNAL_ERROR, finding.detail, elapsed, phases=phases)
    return ProbeOutcome(name, False, code_for(finding.reason), finding.reason, finding.detail, elapsed, facts=facts,
                        phases=phases)


def _classified(exc: BaseException, ctx: ProbeContext, name: str, deadline: float) -> Finding:
    verdict = classify_exception(exc, ctx.who, f"{deadline:g} s", has_credentials=ctx.proxy.username is not None)
    if verdict is None:
        log.error("probe %s on %s raised an unexpected error", name, ctx.proxy.masked_url, exc_info=exc)
        return Finding(False, INTERNAL_ERROR, f"internal error in probe {name}: {type(exc).__name__}: {exc}")
    reason, detail = verdict
    phase = getattr(exc, "phase", None)  # a WireError says in which phase it happened
    return fail(reason, detail, **({"failed_phase": phase} if phase else {}))


def skipped(name: str, because: str) -> ProbeOutcome:
    return ProbeOutcome(name, False, None, None, f"not run: {because}", 0.0, skipped=True)
