"""A simulated daemon for the worker tests: checks recorded through claim and fenced write-back."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update

from proxycheck.health import HealthPolicy, advance
from proxycheck.proxy import Proxy
from proxycheck.result import CheckResult, ProbeOutcome
from proxycheck.store import add_proxies, claim_due, record_results, release_claims
from proxycheck.store._rows import utcnow
from proxycheck.store.models import ProxyRow

POLICY = HealthPolicy()


def proxy(n: int, *, scheme: str = "http", tags: frozenset[str] | set[str] = frozenset()) -> Proxy:
    """The n-th test proxy (TEST-NET-3 addresses, one port per n)."""
    return Proxy(scheme, f"203.0.113.{n % 250 + 1}", 8000 + n, "user", "pw", frozenset(tags))


def verdict(
    p: Proxy,
    healthy: bool,
    at: datetime,
    *,
    code: int | None = None,
    latency_ms: float = 100.0,
    anonymity: str = "elite",
) -> CheckResult:
    if healthy:
        probes = (ProbeOutcome("connect", True, elapsed_ms=5.0), ProbeOutcome("anonymity", True, elapsed_ms=latency_ms))
        return CheckResult(p, True, None, None, "", None, probes, at, 200.0, exit_ip="198.51.100.7", anonymity=anonymity,
                           latency_ms=latency_ms)
    failed = (ProbeOutcome("connect", False, code, "connect_refused", "refused", 5.0),)
    return CheckResult(p, False, code, "connect_refused", "refused", "connect", failed, at, 5.0)


def check(
    engine: Engine,
    outcomes: Mapping[Proxy, bool | tuple[bool, dict]],
    *,
    at: datetime | None = None,
) -> None:
    """One daemon round: claim exactly these proxies, record each verdict (``True``/``False`` or
    ``(healthy, {code=, latency_ms=, anonymity=})``) with ``health.advance``, write back fenced."""
    at = at or utcnow()
    keys = {p.key for p in outcomes}
    with engine.begin() as conn:
        conn.execute(update(ProxyRow).where(ProxyRow.key.in_(keys)).values(next_check_at=at - timedelta(days=3650), lease_expires_at=None))
    claims = claim_due(engine, "test-daemon", len(keys), 60, now=at)
    mine = [c for c in claims if c.proxy.key in keys]
    release_claims(engine, [c for c in claims if c.proxy.key not in keys])
    assert len(mine) == len(keys), "a proxy to check was not claimed"
    by_key = {p.key: v for p, v in outcomes.items()}
    items = []
    for claim in mine:
        v = by_key[claim.proxy.key]
        healthy, extra = (v, {}) if isinstance(v, bool) else v
        r = verdict(claim.proxy, healthy, at, **extra)
        t = advance(claim.state, healthy=healthy, code=r.code, reason=r.reason, now=at, policy=POLICY, rng=random.Random(1))
        items.append((claim, r, t))
    assert all(record_results(engine, items, "test-daemon"))


def fleet(engine: Engine, proxies: list[Proxy], healthy: bool = True, *, at: datetime | None = None) -> list[Proxy]:
    """Add ``proxies`` and check them all once (a first check decides: healthy or unhealthy)."""
    add_proxies(engine, proxies)
    check(engine, dict.fromkeys(proxies, healthy), at=at)
    return proxies


def row(engine: Engine, p: Proxy) -> object:
    with engine.begin() as conn:
        return conn.execute(select(ProxyRow).where(ProxyRow.key == p.key)).one()


FORK = multiprocessing.get_context("fork")


def in_processes(jobs: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> list[Any]:
    """Run each ``(target, args)`` in a forked process that puts one result on the queue passed as
    its last argument; the results in the order they came, once every process exited cleanly."""
    q = FORK.Queue()
    procs = [FORK.Process(target=target, args=(*args, q)) for target, args in jobs]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results
