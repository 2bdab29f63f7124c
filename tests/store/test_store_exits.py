"""Exit IP readings per proxy (store/exits.py): kept, pruned, summarised, and the follow-up visits
they ask for (sticky.py rule 6), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from proxycheck.health import HealthPolicy, advance
from proxycheck.proxy import Proxy
from proxycheck.result import CheckResult
from proxycheck.store import add_proxies, claim_due, list_proxies, record_results, release_claims
from proxycheck.store.exits import KEEP, FollowUp, readings, record_exits
from proxycheck.store.models import ProxyRow

T = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
A, B = "198.51.100.1", "198.51.100.2"


def result(p: Proxy, at: datetime, ip: str | None) -> CheckResult:
    return CheckResult(p, True, None, None, "", None, (), at, 1.0, exit_ip=ip)


def test_readings_are_kept_pruned_and_summarised(writer):
    a, b = Proxy("http", "203.0.113.1", 3128), Proxy("http", "203.0.113.2", 3128)
    add_proxies(writer, [a, b])
    with writer.begin() as conn:
        ids = dict(conn.execute(select(ProxyRow.key, ProxyRow.id)).all())
    # a: a change 30 s apart early on, then one IP every 5 minutes; b: no exit IP learnt.
    for n in range(KEEP + 5):
        at = T + timedelta(seconds=30 * n if n < 2 else 300 * n)
        with writer.begin() as conn:
            found = record_exits(conn, [(ids[a.key], result(a, at, B if n == 1 else A)), (ids[b.key], result(b, at, None))])
            assert set(found.summaries) == {ids[a.key]} and not found.follow_ups  # b read no exit IP
            for pid, summary in found.summaries.items():  # what record_results puts in its UPDATE of the row
                conn.execute(update(ProxyRow).where(ProxyRow.id == pid).values(**summary))
        with writer.begin() as conn:
            kept = readings(conn, [ids[a.key], ids[b.key]])
        assert len(kept[ids[a.key]]) == min(n + 1, KEEP) and ids[b.key] not in kept
        assert kept[ids[a.key]][-1] == (at, A if n != 1 else B)  # the newest last, its time exact
        rows = {r.proxy.key: r for r in list_proxies(writer)}
        state = rows[a.key].stability(120.0).state
        # Rotating while both readings of the 30 s change are kept; then unconfirmed: readings
        # 300 s apart say nothing about the minutes between them (sticky.py rule 2).
        assert state == ("unconfirmed" if n == 0 else "rotating" if n < KEEP else "unconfirmed"), (n, rows[a.key].exit)
    assert rows[b.key].exit.ips == () and rows[b.key].stability(120.0).state == "unconfirmed"
    assert rows[a.key].exit.ips == (A,)


def visit(engine, p: Proxy, ip: str | None, follow_up: FollowUp | None, *, healthy: bool = True) -> datetime:
    """The daemon's write path for one visit at the proxy's own ``next_check_at`` (a fake clock
    that jumps to each due time): claim, ``health.advance``, ``record_results``. Returns the
    visit's time."""
    with engine.connect() as conn:
        at = conn.scalar(select(ProxyRow.next_check_at).where(ProxyRow.key == p.key))
    claims = claim_due(engine, "test", 10, 60, now=at)
    release_claims(engine, [c for c in claims if c.proxy.key != p.key])
    (claim,) = [c for c in claims if c.proxy.key == p.key]
    res = dataclasses.replace(result(p, at, ip), healthy=healthy, code=None if healthy else 25,
                              reason=None if healthy else "connect_refused")
    t = advance(claim.state, healthy=healthy, code=res.code, reason=res.reason, now=at, policy=HealthPolicy(),
                rng=random.Random(1))
    assert record_results(engine, [(claim, res, t)], "test", follow_up=follow_up) == [True]
    return at


def due(engine, p: Proxy) -> datetime:
    with engine.connect() as conn:
        return conn.scalar(select(ProxyRow.next_check_at).where(ProxyRow.key == p.key))


def test_the_write_path_brings_a_follow_up_visit_forward_until_the_exit_is_judged(writer):
    p = Proxy("http", "203.0.113.9", 3128)
    add_proxies(writer, [p])
    plan = FollowUp(window=120.0, refresh=3600.0)
    first = visit(writer, p, A, plan)
    assert due(writer, p) == first + timedelta(seconds=60)  # not a whole interval later
    second = visit(writer, p, A, plan)
    assert second == first + timedelta(seconds=60) and due(writer, p) == second + timedelta(seconds=60)
    third = visit(writer, p, A, plan)
    row = {r.proxy.key: r for r in list_proxies(writer)}[p.key]
    assert row.stability(120.0).state == "stable", row.stability(120.0).detail
    assert due(writer, p) - third >= timedelta(seconds=270)  # judged: back to [health].interval (± jitter)
    # Visits an interval apart with the same IP: the verdict stands, no follow-up ...
    for _ in range(5):
        visit(writer, p, A, plan)
        assert due(writer, p) - third >= timedelta(seconds=270)
        assert {r.proxy.key: r for r in list_proxies(writer)}[p.key].stability(120.0).state == "stable"
        third = due(writer, p)
    # ... until another IP is read: its chain starts again, and so do the follow-ups.
    changed = visit(writer, p, B, plan)
    assert due(writer, p) == changed + timedelta(seconds=60)
    assert {r.proxy.key: r for r in list_proxies(writer)}[p.key].stability(120.0).state == "unconfirmed"


def test_readings_an_interval_apart_never_make_a_proxy_stable(writer):
    """Without follow-ups (the old write path) an hour of one IP every ~300 s is not stable."""
    p = Proxy("http", "203.0.113.10", 3128)
    add_proxies(writer, [p])
    for _ in range(12):
        at = visit(writer, p, A, None)
        assert due(writer, p) - at >= timedelta(seconds=270)
        row = {r.proxy.key: r for r in list_proxies(writer)}[p.key]
        assert row.stability(120.0).state == "unconfirmed", row.stability(120.0).detail


def test_no_follow_up_for_a_gateway_or_an_unusable_proxy(writer):
    gateway = Proxy("http", "203.0.113.11", 3128, tags=frozenset({"rotating"}))
    down = Proxy("http", "203.0.113.12", 3128)
    add_proxies(writer, [gateway, down])
    plan = FollowUp(window=120.0, refresh=3600.0)
    at = visit(writer, gateway, A, plan)
    assert due(writer, gateway) - at >= timedelta(seconds=270)
    at = visit(writer, down, A, plan, healthy=False)  # a failure that still read the exit IP
    assert due(writer, down) - at >= timedelta(seconds=100)  # [health].failing_interval, not 60 s


def test_a_reading_older_than_the_kept_ones_goes_in_its_place(writer):
    """Two daemons on one database can store a check that started before the latest reading
    (a lease taken over): the readings stay in time order, so the summary reads them right."""
    p = Proxy("http", "203.0.113.20", 3128)
    add_proxies(writer, [p])
    with writer.begin() as conn:
        pid = conn.scalar(select(ProxyRow.id))
    for at, ip in [(T, A), (T + timedelta(seconds=600), A), (T + timedelta(seconds=300), B)]:
        with writer.begin() as conn:
            found = record_exits(conn, [(pid, result(p, at, ip))])
    with writer.begin() as conn:
        assert readings(conn, [pid])[pid] == [(T, A), (T + timedelta(seconds=300), B), (T + timedelta(seconds=600), A)]
    assert found.summaries[pid]["exit_ips"] == [B, A]  # the latest sighting last
