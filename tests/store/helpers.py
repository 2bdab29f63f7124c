"""Values for the store tests: proxies, check results and a fixed clock."""

from __future__ import annotations

import random
from datetime import datetime, timezone

from sqlalchemy import Engine, update

from proxycheck.health import HealthPolicy, Transition, advance
from proxycheck.proxy import Proxy
from proxycheck.result import CheckResult, ProbeOutcome
from proxycheck.store import Claim, claim_due, record_result, release_claims
from proxycheck.store.models import ProxyRow

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def proxy(
    n: int, *, password: str | None = "pw", tags: frozenset[str] = frozenset(), label: str | None = None
) -> Proxy:
    """The n-th test proxy (TEST-NET-3 addresses, one port per n)."""
    return Proxy("http", f"203.0.113.{n % 250 + 1}", 8000 + n, "user", password, tags, label)


def result(
    p: Proxy,
    healthy: bool | None,
    *,
    code: int | None = None,
    reason: str | None = None,
    at: datetime = NOW,
    latency_ms: float = 120.0,
) -> CheckResult:
    """A CheckResult as the checker would produce it: pass, failure, or checker_unavailable."""
    if healthy:
        probes = (
            ProbeOutcome("connect", True, elapsed_ms=10.0),
            ProbeOutcome("anonymity", True, elapsed_ms=latency_ms),
        )
        return CheckResult(
            p, True, None, None, "", None, probes, at, 200.0, exit_ip="198.51.100.7", anonymity="elite",
            latency_ms=latency_ms,
        )
    if healthy is None:
        return CheckResult(p, None, None, "checker_unavailable", "judge down", None, (), at, 5.0)
    failed = (ProbeOutcome("connect", False, code, reason, f"{reason} detail", 5000.0),)
    return CheckResult(p, False, code, reason, f"{reason} detail", "connect", failed, at, 5000.0)


def outcome(
    claim: Claim, healthy: bool, *, code: int | None = None, reason: str | None = None, at: datetime = NOW
) -> tuple[Claim, CheckResult, Transition]:
    """(claim, result, transition) as the daemon would record it."""
    r = result(claim.proxy, healthy, code=code, reason=reason, at=at)
    t = advance(
        claim.state,
        healthy=healthy,
        code=code,
        reason=reason,
        now=at,
        policy=HealthPolicy(),
        rng=random.Random(1),
    )
    return claim, r, t


def check_once(
    engine: Engine,
    p: Proxy,
    healthy: bool,
    *,
    code: int | None = None,
    reason: str | None = None,
    at: datetime = NOW,
) -> None:
    """Run one (simulated) check of ``p`` at ``at`` through claim and fenced write-back."""
    with engine.begin() as conn:
        conn.execute(
            update(ProxyRow).where(ProxyRow.key == p.key).values(next_check_at=at, lease_expires_at=None)
        )
    claims = claim_due(engine, "test", 10_000, 60, now=at)
    (mine,) = [c for c in claims if c.proxy.key == p.key]
    release_claims(engine, [c for c in claims if c is not mine])
    assert record_result(engine, *outcome(mine, healthy, code=code, reason=reason, at=at), instance_id="test")
