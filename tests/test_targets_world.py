"""Ban targets and sticky exits end to end: real proxies, the real judge, real SQLite and PostgreSQL.

Each check is a real ``Checker.check`` through a world proxy; it is stored through the daemon's
own write path (claim, ``health.advance``, fenced ``record_results``) at a chosen time, so a
test can place visits minutes apart without waiting; the worker API then reads the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

import proxycheck
from proxycheck import NoHealthyProxy
from proxycheck.checker import Checker
from proxycheck.config import load_settings
from proxycheck.health import HealthPolicy, advance
from proxycheck.metrics import DaemonMetrics
from proxycheck.proxy import Proxy, parse_proxy_url
from proxycheck.result import CheckResult
from proxycheck.store import add_proxies, claim_due, list_proxies, record_results, release_claims, status_summary
from proxycheck.store._rows import utcnow
from proxycheck.store.models import ProxyRow
from proxycheck.store.reports import feedback_summary, guard_rail
from proxycheck.worker import ProxyPool, WorkerSettings

pytestmark = pytest.mark.world

T0 = utcnow().replace(microsecond=0) - timedelta(minutes=10)  # reset per test by fresh_t0 below


@pytest.fixture(autouse=True)
def fresh_t0():
    """Visits are stored 10 min in the past: fresh for max_age (900 s) at the moment the test runs.
    Taken at import time instead, a full suite reaches this file more than 5 minutes later and every
    stored check is already stale."""
    global T0
    T0 = utcnow().replace(microsecond=0) - timedelta(minutes=10)


def check_now(world, proxies: list[Proxy]) -> dict[str, CheckResult]:
    """Real checks through the world's proxies, by proxy key."""
    checker = Checker(load_settings(str(world.config_path), environ={}))

    async def go() -> list[CheckResult]:
        status = await checker.preflight()
        assert status.ok, status.reason
        return [await checker.check(p, status.own_ips) for p in proxies]

    return {r.proxy.key: r for r in asyncio.run(go())}


def store(engine, results: list[CheckResult], at: datetime) -> None:
    """The daemon's write path for ``results``, as if checked at ``at``."""
    keys = {r.proxy.key for r in results}
    with engine.begin() as conn:
        conn.execute(update(ProxyRow).where(ProxyRow.key.in_(keys)).values(next_check_at=at - timedelta(days=1)))
    claims = claim_due(engine, "test", 1000, 60, now=at)
    release_claims(engine, [c for c in claims if c.proxy.key not in keys])
    by_key = {r.proxy.key: dataclasses.replace(r, started_at=at) for r in results}
    items = []
    for claim in (c for c in claims if c.proxy.key in keys):
        r = by_key[claim.proxy.key]
        t = advance(claim.state, healthy=bool(r.healthy), code=r.code, reason=r.reason, now=at,
                    policy=HealthPolicy(), rng=random.Random(1))
        items.append((claim, r, t))
    assert len(items) == len(keys) and all(record_results(engine, items, "test"))


def keys(proxies: list[Proxy]) -> set[str]:
    return {p.key for p in proxies}


def test_a_proxy_challenged_only_by_turnstile_serves_the_other_targets(world, migrated_url, writer):
    turnstile_banned = parse_proxy_url(world.by_name("squid-turnstile-banned").url)
    google_banned = parse_proxy_url(world.by_name("squid-banned-exit").url)
    clean = parse_proxy_url(world.by_name("squid-anonymous").url)
    fleet = [turnstile_banned, google_banned, clean]
    add_proxies(writer, fleet)
    results = check_now(world, fleet)
    assert results[turnstile_banned.key].usable_for == ["recaptcha", "google_search", "hcaptcha", "funcaptcha"]
    store(writer, list(results.values()), T0)

    pool = ProxyPool(migrated_url)
    try:
        assert keys(pool.get_all()) == {clean.key}  # healthy = no target bans it
        assert keys(pool.get_all(target="recaptcha")) == {turnstile_banned.key, clean.key}
        assert keys(pool.get_all(target="turnstile")) == {google_banned.key, clean.key}
        assert keys(pool.get_all(target="hcaptcha")) == keys(fleet)
        assert keys(pool.get_all(target="no-such-target")) == set()
        for strategy in ("random", "fastest", "least_used", "round_robin"):
            assert pool.get(target="recaptcha", exclude=[clean], strategy=strategy).key == turnstile_banned.key
            with pytest.raises(NoHealthyProxy, match="usable for ban target 'turnstile'"):
                pool.get(target="turnstile", exclude=[clean, google_banned], strategy=strategy)
    finally:
        pool.close()
    default = proxycheck.configure(migrated_url)
    try:
        assert proxycheck.get_healthy_proxy(target="turnstile", exclude=[clean]).key == google_banned.key
        assert asyncio.run(proxycheck.aget_healthy_proxy(target="recaptcha", exclude=[clean])).key == turnstile_banned.key
        assert keys(asyncio.run(proxycheck.aget_healthy_proxies(target="turnstile"))) == {google_banned.key, clean.key}
    finally:
        default.close()
        proxycheck.worker._default = None

    summary = status_summary(writer)
    assert summary.bans == (("recaptcha", 1), ("turnstile", 1))
    rows = {r.proxy.key: r for r in list_proxies(writer)}
    assert rows[turnstile_banned.key].banned_on == ("turnstile",)
    feedback = feedback_summary(writer, guard_rail(WorkerSettings()))
    text = DaemonMetrics(lambda: (summary, feedback)).render().decode()
    assert 'proxycheck_banned_proxies{target="turnstile"} 1.0' in text
    assert 'proxycheck_banned_proxies{target="recaptcha"} 1.0' in text

    # A later check that fails on something else takes it out for every target.
    refused = dataclasses.replace(results[clean.key], proxy=turnstile_banned)
    refused = dataclasses.replace(refused, healthy=False, code=25, reason="connect_refused", probe="tcp_connect",
                                  targets=None)
    store(writer, [refused], T0 + timedelta(seconds=30))
    pool = ProxyPool(migrated_url)
    try:
        assert keys(pool.get_all(target="recaptcha")) == {clean.key}
    finally:
        pool.close()


def test_a_rotating_exit_is_marked_rotating_and_a_stable_one_becomes_sticky(world, migrated_url, writer):
    rotating_exit = world.rotating_exit
    rotating = parse_proxy_url(world.rotating_url)
    gateway = dataclasses.replace(parse_proxy_url(world.rotating_url.replace("http://", "http://gw@")),
                                  tags=frozenset({"rotating"}))
    stable = parse_proxy_url(world.by_name("squid-anonymous").url)
    fleet = [rotating, gateway, stable]
    add_proxies(writer, fleet)
    window = 120.0
    try:
        visits = [T0, T0 + timedelta(seconds=60), T0 + timedelta(seconds=150)]
        seen = []
        for n, at in enumerate(visits):
            results = check_now(world, fleet)
            assert all(r.healthy for r in results.values()), [r.detail for r in results.values()]
            seen.append(results[rotating.key].exit_ip)
            store(writer, list(results.values()), at)
            rows = {r.proxy.key: r for r in list_proxies(writer)}
            states = {key: rows[key].stability(window).state for key in keys(fleet)}
            expected_stable = "stable" if n == 2 else "unconfirmed"
            assert states == {
                rotating.key: "unconfirmed" if n == 0 else "rotating",
                gateway.key: "gateway",
                stable.key: expected_stable,
            }, [rows[k].stability(window).detail for k in keys(fleet)]
            pool = ProxyPool(migrated_url)
            try:
                sticky = keys(pool.get_all(sticky=True))
                assert sticky == ({stable.key} if n == 2 else set())
                for strategy in ("random", "fastest", "least_used", "round_robin"):
                    if n == 2:
                        assert pool.get(sticky=True, strategy=strategy).key == stable.key
                    else:
                        with pytest.raises(NoHealthyProxy, match="sticky exit"):
                            pool.get(sticky=True, strategy=strategy)
                assert keys(pool.get_all()) == keys(fleet)  # rotating is a fact, not a failure
            finally:
                pool.close()
            rotating_exit.rotate()
        assert seen == ["127.0.2.26", "127.0.3.26", "127.0.2.26"]
        row = {r.proxy.key: r for r in list_proxies(writer)}[rotating.key]
        assert set(row.stability(window).ips) == {"127.0.2.26", "127.0.3.26"}
        assert "exit changed within 60 s" in row.stability(window).detail
    finally:
        rotating_exit.reset()
