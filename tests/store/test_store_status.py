"""Instances (heartbeats, the checker's own health) and the read side for `proxycheck status`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from proxycheck.store import (
    claim_due,
    heartbeat,
    list_proxies,
    live_instances,
    mark_stopped,
    prune_instances,
    record_results,
    register_instance,
    status_summary,
    sync_source,
)
from proxycheck.store.eligibility import Eligibility, Filters
from proxycheck.store.models import InstanceRow, ProxyRow
from proxycheck.store.selection import select_eligible

from .helpers import NOW, check_once, outcome, proxy

LATER = NOW + timedelta(hours=1)


def test_instances_are_live_while_they_heartbeat(writer, reader):
    a = register_instance(writer, now=NOW, hostname="a", pid=10, heartbeat_interval=10)  # live for 30 s
    b = register_instance(writer, now=NOW, hostname="b", pid=11, heartbeat_interval=10)
    assert heartbeat(
        writer, a, "degraded", "judge unreachable", NOW, ["192.0.2.1"], now=NOW + timedelta(seconds=20)
    )
    assert heartbeat(writer, b, now=NOW + timedelta(seconds=10))

    live = live_instances(reader, now=NOW + timedelta(seconds=25))
    assert [(i.id, i.hostname, i.pid) for i in live] == [(a, "a", 10), (b, "b", 11)]  # latest first
    assert (live[0].checker_state, live[0].checker_reason, live[0].own_ips) == (
        "degraded",
        "judge unreachable",
        ("192.0.2.1",),
    )
    assert [i.id for i in live_instances(reader, now=NOW + timedelta(seconds=45))] == [a]  # b is silent
    mark_stopped(writer, a, now=NOW + timedelta(seconds=46))
    assert live_instances(reader, now=NOW + timedelta(seconds=47)) == []


def test_heartbeat_rejects_unknown_checker_states_and_reports_missing_rows(writer):
    with pytest.raises(ValueError, match="checker_state"):
        heartbeat(writer, "x", "broken")
    assert not heartbeat(writer, "no-such-instance")


def test_prune_instances_forgets_long_gone_ones(writer):
    old = register_instance(writer, now=NOW - timedelta(days=30))
    stopped = register_instance(writer, now=NOW - timedelta(days=1))
    mark_stopped(writer, stopped, now=NOW - timedelta(days=1))
    current = register_instance(writer, now=NOW)
    assert prune_instances(writer, NOW, older_than_days=7) == 1
    assert {i.id for i in live_instances(writer, now=NOW)} == {current}
    with writer.begin() as conn:
        assert old not in set(conn.scalars(select(InstanceRow.id)))


@pytest.mark.parametrize("interval, silent, live", [
    (600.0, 1000.0, True),  # a long heartbeat: live for 3 of them (1800 s), not a fixed 60 s
    (600.0, 1900.0, False),
    (5.0, 14.0, True),  # never less than MIN_SILENCE (15 s)
    (5.0, 16.0, False),
    (None, 59.0, True),  # a row from before the interval was stored: the old 60 s
    (None, 61.0, False),
])
def test_every_liveness_answer_uses_the_instances_own_interval(writer, reader, interval, silent, live):
    """status, doctor (live_instances), NoHealthyProxy (status_summary) and the lease take-back
    all answer from the stored interval (instances.py rule 1)."""
    from proxycheck.store import reclaim_stale_leases
    from proxycheck.store.instances import is_live

    sync_source(writer, "a.csv", [proxy(1)], NOW)
    daemon = register_instance(writer, now=NOW, heartbeat_interval=interval)
    at = NOW + timedelta(seconds=silent)
    with writer.begin() as conn:
        conn.execute(update(ProxyRow).values(next_check_at=NOW))
    assert len(claim_due(writer, daemon, 1, 86400, now=NOW)) == 1
    assert is_live(None, NOW, interval, at) is live
    assert ([i.id for i in live_instances(reader, now=at)] == [daemon]) is live
    assert (status_summary(reader, now=at).checker_state == "ok") is live
    assert reclaim_stale_leases(writer, now=at) == (0 if live else 1)


def fleet(writer):
    """healthy: 1 (tag de), 2 (tag us); unhealthy: 3 (49, tag de), 4 (49), 5 (25); unknown: 6;
    disabled: 7. Checked at LATER; next checks hours away."""
    tags = {1: {"de"}, 2: {"us"}, 3: {"de"}}
    everyone = [proxy(n, tags=frozenset(tags.get(n, ()))) for n in range(1, 8)]
    sync_source(writer, "s", everyone, NOW)
    for n in (1, 2):
        check_once(writer, everyone[n - 1], True, at=LATER)
    for n in (3, 4):
        check_once(writer, everyone[n - 1], False, code=49, reason="auth_rejected", at=LATER)
    check_once(writer, everyone[4], False, code=25, reason="connect_refused", at=LATER)
    with writer.begin() as conn:
        conn.execute(update(ProxyRow).values(next_check_at=LATER + timedelta(hours=5)))
    sync_source(writer, "s", everyone[:6], NOW)


def test_status_summary(writer, reader):
    fleet(writer)
    i = register_instance(writer, now=LATER)
    heartbeat(writer, i, "degraded", "no route to the judge", LATER, [], now=LATER)
    summary = status_summary(reader, now=LATER + timedelta(seconds=5))
    assert summary.counts == {"healthy": 2, "unhealthy": 3, "unknown": 1, "disabled": 1}
    assert summary.total == 7
    assert (summary.checker_state, summary.checker_reason) == ("degraded", "no route to the judge")
    assert summary.last_round_at == LATER
    assert summary.top_codes == ((49, 2), (25, 1))
    assert summary.overdue == 0
    assert status_summary(reader, now=LATER + timedelta(hours=6)).overdue == 6


def test_status_reflects_stored_checks_at_once(writer, reader):
    """No "last round never" between a check being stored and the daemon's next heartbeat."""
    sync_source(writer, "s", [proxy(1), proxy(2)], NOW, spread=False)
    instance = register_instance(writer, now=NOW)  # started; its first heartbeat is 10 s away
    assert status_summary(reader, now=NOW).last_round_at is None
    claims = claim_due(writer, instance, 10, 60, now=NOW)
    stored = record_results(writer, [outcome(c, True, at=NOW + timedelta(seconds=n)) for n, c in enumerate(claims)],
                            instance)
    assert stored == [True, True]
    summary = status_summary(reader, now=NOW + timedelta(seconds=2))
    assert summary.last_round_at == summary.last_check_at == NOW + timedelta(seconds=1)
    assert summary.counts["healthy"] == 2
    # A heartbeat naming a later round (its checks still in flight) is later still.
    heartbeat(writer, instance, last_round_at=NOW + timedelta(seconds=5), now=NOW + timedelta(seconds=5))
    summary = status_summary(reader, now=NOW + timedelta(seconds=6))
    assert (summary.last_round_at, summary.last_check_at) == (NOW + timedelta(seconds=5), NOW + timedelta(seconds=1))


def test_status_summary_without_a_running_daemon(reader):
    summary = status_summary(reader, now=NOW)
    assert (summary.total, summary.checker_state, summary.instances, summary.top_codes) == (0, None, (), ())


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [1, 2, 3, 4, 5, 6, 7]),
        ({"include_disabled": False}, [1, 2, 3, 4, 5, 6]),
        ({"unhealthy_only": True}, [3, 4, 5]),
        ({"tag": "de"}, [1, 3]),
        ({"code": 49}, [3, 4]),
        ({"unhealthy_only": True, "tag": "de"}, [3]),
        ({"tag": "nowhere"}, []),
    ],
)
def test_list_proxies_filters(writer, reader, filters, expected):
    fleet(writer)
    listed = list_proxies(reader, **filters)
    assert sorted(p.proxy.port - 8000 for p in listed) == expected


def test_list_proxies_rows_say_what_a_status_line_needs(writer, reader):
    fleet(writer)
    by_n = {p.proxy.port - 8000: p for p in list_proxies(reader)}
    assert by_n[7].display_state == "disabled"
    assert (by_n[3].display_state, by_n[3].health.code, by_n[3].health.reason) == (
        "unhealthy",
        49,
        "auth_rejected",
    )
    assert by_n[3].detail == "auth_rejected detail" and by_n[3].probe == "connect"
    assert (by_n[1].display_state, by_n[1].latency_ms, by_n[1].exit_ip) == ("healthy", 120.0, "198.51.100.7")
    assert "pw" not in repr(by_n[1]) and "pw" not in str(by_n[1].proxy)


def test_eligible_proxies_are_fresh_and_tagged(writer, reader):
    fleet(writer)
    fresh = select_eligible(reader, Eligibility(LATER))
    assert sorted(p.port - 8000 for p in fresh) == [1, 2]
    assert fresh[0].password == "pw"  # workers get the credentials
    de = Eligibility(LATER, Filters(tags=frozenset({"de"})))
    assert [p.port - 8000 for p in select_eligible(reader, de)] == [1]
    assert select_eligible(reader, Eligibility(LATER + timedelta(seconds=1))) == []  # stale
    assert len(select_eligible(reader, Eligibility(LATER), limit=1)) == 1


def test_oldest_due_at_is_the_longest_wait_of_an_unclaimed_proxy(writer, reader):
    """The dispatch lag's source: a leased proxy is being checked, not waiting; a disabled one never waits."""
    sync_source(writer, "s", [proxy(1), proxy(2), proxy(3)], NOW, spread=False)
    due = {1: NOW - timedelta(seconds=90), 2: NOW - timedelta(seconds=30), 3: NOW + timedelta(seconds=60)}
    with writer.begin() as conn:
        for n, at in due.items():
            conn.execute(update(ProxyRow).where(ProxyRow.key == proxy(n).key).values(next_check_at=at))
    assert status_summary(reader, now=NOW).oldest_due_at == due[1]
    (claim,) = claim_due(writer, "a", 1, 60, now=NOW)  # most overdue first: proxy 1
    assert claim.proxy.key == proxy(1).key
    assert status_summary(reader, now=NOW).oldest_due_at == due[2]
    assert status_summary(reader, now=NOW + timedelta(seconds=61)).oldest_due_at == due[1]  # its lease expired
    with writer.begin() as conn:
        conn.execute(update(ProxyRow).values(enabled=False))
    assert status_summary(reader, now=NOW + timedelta(seconds=61)).oldest_due_at is None
