"""Selection: only healthy, fresh, enabled proxies, filters, strategies (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import update

from proxycheck import NoHealthyProxy
from proxycheck.store import sync_source
from proxycheck.store._rows import utcnow
from proxycheck.store.models import ProxyRow

from .helpers import check, fleet, proxy

SNAPSHOT_MODES = [pytest.param(60.0, id="snapshot"), pytest.param(0.0, id="query")]


@pytest.fixture
def mixed(writer):
    """1, 2 healthy and fresh; 3 healthy but stale (2 h); 4 unhealthy (49); 5 unknown; 6 disabled."""
    ps = [proxy(n) for n in range(1, 7)]
    sync_source(writer, "s", ps, utcnow(), spread=False)
    now = utcnow()
    check(writer, {ps[0]: True, ps[1]: True, ps[5]: True}, at=now)
    check(writer, {ps[2]: True}, at=now - timedelta(hours=2))
    check(writer, {ps[3]: (False, {"code": 49})}, at=now)
    sync_source(writer, "s", ps[:5], utcnow(), spread=False)  # 6 disabled
    return ps


@pytest.mark.parametrize("snapshot_seconds", SNAPSHOT_MODES)
def test_only_healthy_fresh_enabled_proxies_are_handed_out(make_pool, mixed, snapshot_seconds):
    pool = make_pool(snapshot_seconds=snapshot_seconds)
    seen = Counter(pool.get().key for _ in range(200))
    assert set(seen) == {mixed[0].key, mixed[1].key}  # random: both, nothing else
    assert {p.key for p in pool.get_all()} == {mixed[0].key, mixed[1].key}


def test_a_handed_out_proxy_carries_credentials_and_check_facts(make_pool, writer):
    (p,) = fleet(writer, [proxy(1, tags={"us"})])
    got = make_pool().get()
    assert got == p and got.password == "pw" and got.tags == {"us"}
    assert (got.exit_ip, got.latency_ms) == ("198.51.100.7", 100.0)
    assert "pw" not in repr(got) and "pw" not in str(got)
    assert got.as_anticaptcha(local_test=True)["proxyAddress"] == "203.0.113.2"


# n: (scheme, tags, anonymity) of the fleet FILTER_TABLE runs against
FLEET = {
    1: ("http", {"us", "fast"}, "elite"),
    2: ("http", {"us"}, "anonymous"),
    3: ("socks5", {"us"}, "elite"),
    4: ("socks5", {"de"}, "anonymous"),
    5: ("socks5h", set(), "elite"),
}
FILTER_TABLE = [  # (filters, proxies expected); "exclude" rows name proxies by number
    ({}, {1, 2, 3, 4, 5}),
    ({"tags": "us"}, {1, 2, 3}),
    ({"tags": {"us", "fast"}}, {1}),
    ({"tags": ["nowhere"]}, set()),
    ({"scheme": "socks5"}, {3, 4}),
    ({"scheme": {"http", "socks5h"}}, {1, 2, 5}),
    ({"anonymity": "anonymous"}, {1, 2, 3, 4, 5}),
    ({"anonymity": "elite"}, {1, 3, 5}),
    ({"tags": "us", "scheme": "socks5", "anonymity": "elite"}, {3}),
    ({"exclude": (1, 2, 3)}, {4, 5}),
    ({"tags": "us", "exclude": (1, 2, 3)}, set()),
]


@pytest.mark.parametrize("snapshot_seconds", SNAPSHOT_MODES)
def test_filters(make_pool, writer, snapshot_seconds):
    ps = {n: proxy(n, scheme=s, tags=t) for n, (s, t, _) in FLEET.items()}
    fleet(writer, list(ps.values()), healthy=False)
    for _ in range(2):  # rise = 2
        check(writer, {ps[n]: (True, {"anonymity": a}) for n, (_, _, a) in FLEET.items()})
    pool = make_pool(snapshot_seconds=snapshot_seconds)
    number = {p.key: n for n, p in ps.items()}
    for filters, expected in FILTER_TABLE:
        if "exclude" in filters:  # a Proxy, a full URL (with password) and a key all work
            one, two, three = (ps[n] for n in filters["exclude"])
            filters = {**filters, "exclude": [one, two.url, three.key]}
        assert {number[p.key] for p in pool.get_all(**filters)} == expected, filters
        if expected:
            assert {number[pool.get(**filters).key] for _ in range(60)} <= expected, filters
        else:
            with pytest.raises(NoHealthyProxy, match="none qualifies"):
                pool.get(**filters)


@pytest.mark.parametrize("snapshot_seconds", SNAPSHOT_MODES)
def test_fastest(make_pool, writer, snapshot_seconds):
    ps = fleet(writer, [proxy(n) for n in range(1, 5)])
    check(writer, {ps[0]: (True, {"latency_ms": 300.0}), ps[1]: (True, {"latency_ms": 40.0}),
                   ps[2]: (True, {"latency_ms": 90.0}), ps[3]: (True, {"latency_ms": 41.0})})
    pool = make_pool(snapshot_seconds=snapshot_seconds)
    assert pool.get(strategy="fastest") == ps[1]
    assert pool.get(strategy="fastest", exclude=[ps[1]]) == ps[3]
    assert [p.latency_ms for p in pool.get_all()] == [40.0, 41.0, 90.0, 300.0]


def test_least_used_balances_across_processes(make_pool, writer):
    fleet(writer, [proxy(n) for n in range(1, 5)])
    a, b = make_pool(), make_pool()  # two worker processes share the counts in the database
    handed = Counter(pool.get(strategy="least_used").key for _ in range(10) for pool in (a, b))
    assert sorted(handed.values()) == [5, 5, 5, 5]
    # A new proxy starts at 0 and gets every hand-out until it catches up (least_used's
    # known trade-off; round_robin gives it one turn).
    new = fleet(writer, [proxy(9)])[0]
    assert [a.get(strategy="least_used") for _ in range(3)] == [new, new, new]


def test_round_robin_cycles_across_processes_never_used_first(make_pool, writer):
    ps = fleet(writer, [proxy(n) for n in range(1, 4)])
    a, b = make_pool(), make_pool()
    order = [(a if i % 2 else b).get(strategy="round_robin") for i in range(6)]
    assert order == ps + ps
    new = fleet(writer, [proxy(7)])[0]
    assert a.get(strategy="round_robin") == new  # never handed out: it goes first
    assert b.get(strategy="round_robin") == ps[0]  # then the least recently used


@pytest.mark.parametrize("snapshot_seconds", SNAPSHOT_MODES)  # snapshot: a pick among its ids
def test_counted_strategies_respect_filters_and_freshness(make_pool, writer, snapshot_seconds):
    ps = fleet(writer, [proxy(1, tags={"us"}), proxy(2), proxy(3, tags={"us"})])
    check(writer, {ps[2]: True}, at=utcnow() - timedelta(hours=1))  # stale
    pool = make_pool(snapshot_seconds=snapshot_seconds)
    for strategy in ("least_used", "round_robin"):
        assert {pool.get(strategy=strategy, tags="us") for _ in range(4)} == {ps[0]}
        with pytest.raises(NoHealthyProxy):
            pool.get(strategy=strategy, tags="us", exclude=[ps[0]])


def test_counted_pick_among_an_old_snapshots_ids_falls_back_to_the_database(make_pool, writer):
    # Regression: with a selective filter the pick is restricted to the snapshot's ids; when all
    # of them had turned ineligible, NoHealthyProxy was raised although a proxy matched.
    ps = fleet(writer, [proxy(1, tags={"rare"}), proxy(2)])
    pool = make_pool(snapshot_seconds=3600)
    for strategy in ("least_used", "round_robin"):
        assert pool.get(strategy=strategy, tags="rare") == ps[0]  # snapshot read: {ps[0]}
    new = fleet(writer, [proxy(3, tags={"rare"})])[0]  # not in the snapshot
    check(writer, {ps[0]: (False, {"code": 49})})
    for strategy in ("least_used", "round_robin"):
        assert pool.get(strategy=strategy, tags="rare") == new
    check(writer, {new: (False, {"code": 49})})
    with pytest.raises(NoHealthyProxy):
        pool.get(strategy="least_used", tags="rare")


def test_stale_proxies_are_never_handed_out_even_from_an_old_snapshot(make_pool, writer):
    ps = fleet(writer, [proxy(1), proxy(2)])
    t0 = utcnow()
    clock = [t0]
    pool = make_pool(snapshot_seconds=3600, max_age=600, clock=lambda: clock[0])
    assert pool.get() in ps  # the snapshot is loaded now and kept for an hour
    clock[0] = t0 + timedelta(seconds=601)  # the daemon stopped: nothing was re-checked
    for strategy in ("random", "fastest", "least_used", "round_robin"):
        with pytest.raises(NoHealthyProxy, match="2 healthy but stale .*more than 600 s ago"):
            pool.get(strategy=strategy)
    assert pool.get_all() == []


def test_a_proxy_marked_unhealthy_is_not_handed_out_even_from_an_old_snapshot(make_pool, writer):
    ps = fleet(writer, [proxy(n) for n in range(1, 4)])
    pool = make_pool(snapshot_seconds=3600)
    assert {pool.get() for _ in range(60)} == set(ps)
    check(writer, {ps[0]: (False, {"code": 49})})  # definitive: unhealthy at once
    with writer.begin() as conn:  # and one disabled behind the daemon's back
        conn.execute(update(ProxyRow).where(ProxyRow.key == ps[1].key).values(enabled=False))
    assert {pool.get() for _ in range(100)} == {ps[2]}
    assert {pool.get(strategy="fastest") for _ in range(5)} == {ps[2]}


def test_newly_healthy_proxies_appear_within_snapshot_seconds(make_pool, writer):
    ps = fleet(writer, [proxy(1)])
    pool = make_pool(snapshot_seconds=0.3)
    assert pool.get() == ps[0]
    new = fleet(writer, [proxy(2)])[0]
    time.sleep(0.35)
    assert new in {pool.get() for _ in range(60)}


def test_an_empty_snapshot_is_rechecked_before_giving_up(make_pool, writer):
    pool = make_pool(snapshot_seconds=3600)
    with pytest.raises(NoHealthyProxy):
        pool.get()
    (p,) = fleet(writer, [proxy(1)])
    time.sleep(0.3)  # EMPTY_RECHECK
    assert pool.get() == p


def test_bad_arguments_name_the_parameter(make_pool, writer):
    fleet(writer, [proxy(1)])
    pool = make_pool()
    with pytest.raises(ValueError, match="strategy: 'fair'"):
        pool.get(strategy="fair")
    with pytest.raises(ValueError, match="anonymity: 'super'"):
        pool.get(anonymity="super")
