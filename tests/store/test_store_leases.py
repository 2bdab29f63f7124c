"""Claiming due proxies under a lease, and the fenced write-back."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from proxycheck.health import HealthState
from proxycheck.store import (
    claim_due,
    record_result,
    record_results,
    release_claims,
    reschedule_unavailable,
    sync_source,
)
from proxycheck.store.models import CheckRow, ProxyRow

from .helpers import NOW, outcome, proxy, result

LATER = NOW + timedelta(hours=1)  # every proxy synced at NOW is due by then


def history(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(CheckRow).order_by(CheckRow.id)).all()


def row(engine, p):
    with engine.connect() as conn:
        return conn.execute(select(ProxyRow).where(ProxyRow.key == p.key)).one()


def set_next_check(engine, p, when):
    with engine.begin() as conn:
        conn.execute(update(ProxyRow).where(ProxyRow.key == p.key).values(next_check_at=when))


def test_claim_takes_due_enabled_unleased_proxies_most_overdue_first(writer):
    sync_source(writer, "s", [proxy(n) for n in range(6)], NOW)
    for n, minutes in [(0, 5), (1, -30), (2, -10), (3, -20), (4, -1)]:
        set_next_check(writer, proxy(n), LATER + timedelta(minutes=minutes))
    sync_source(writer, "s", [proxy(n) for n in range(5)], NOW)  # proxy(5) disabled

    claims = claim_due(writer, "i1", 3, 60, now=LATER)
    assert [c.proxy for c in claims] == [proxy(1), proxy(3), proxy(2)]
    assert [c.proxy for c in claim_due(writer, "i2", 10, 60, now=LATER)] == [proxy(4)]  # 0 not due yet
    assert claim_due(writer, "i3", 10, 60, now=LATER) == []


def test_a_claim_carries_what_the_checker_needs(writer):
    sync_source(writer, "s", [proxy(1, password="s3cret", tags=frozenset({"de"}))], NOW)
    (claim,) = claim_due(writer, "i1", 10, 90, now=LATER)
    assert claim.proxy == proxy(1, password="s3cret", tags=frozenset({"de"}))
    assert claim.proxy.password == "s3cret"
    assert claim.state == HealthState()
    assert claim.lease_expires_at == LATER + timedelta(seconds=90)
    assert claim.lease_expires_at.tzinfo is timezone.utc
    stored = row(writer, proxy(1))
    assert (stored.lease_owner, stored.lease_token) == ("i1", claim.lease_token)


def test_every_claimed_row_gets_its_own_token(writer):
    sync_source(writer, "s", [proxy(n) for n in range(20)], NOW)
    tokens = [c.lease_token for c in claim_due(writer, "i1", 20, 60, now=LATER)]
    assert len(set(tokens)) == 20 and all(len(t) >= 32 for t in tokens)


def test_postgresql_uses_its_own_clock_by_default(writer):
    sync_source(writer, "s", [proxy(1)], NOW)  # due in 2026, i.e. now or soon, whatever the clock
    set_next_check(writer, proxy(1), datetime.now(timezone.utc) - timedelta(seconds=1))
    (claim,) = claim_due(writer, "i1", 10, 60)
    now = datetime.now(timezone.utc)
    assert now < claim.lease_expires_at <= now + timedelta(seconds=61)


def test_record_result_stores_state_history_and_clears_the_lease(writer):
    sync_source(writer, "s", [proxy(1)], NOW)
    (claim,) = claim_due(writer, "i1", 10, 60, now=LATER)
    _, res, transition = item = outcome(claim, True, at=LATER)
    assert record_result(writer, *item, instance_id="i1")

    stored = row(writer, proxy(1))
    assert (stored.state, stored.consecutive_successes, stored.code) == ("healthy", 1, None)
    assert stored.state_changed_at == LATER and stored.last_success_at == LATER
    assert stored.next_check_at == transition.next_check_at
    assert (stored.exit_ip, stored.anonymity, stored.latency_ms) == ("198.51.100.7", "elite", 120.0)
    assert (stored.lease_owner, stored.lease_token, stored.lease_expires_at) == (None, None, None)
    (check,) = history(writer)
    assert (check.healthy, check.checked_at, check.instance_id) == (True, LATER, "i1")
    # A pass keeps each probe's name, outcome and time, not its wording (result.history_probes).
    assert check.probes == [{"name": p.name, "ok": True, "elapsed_ms": p.elapsed_ms} for p in res.probes]
    assert check.detail is None


def test_a_failure_keeps_the_last_known_exit_ip_and_records_why(writer):
    sync_source(writer, "s", [proxy(1)], NOW)
    (claim,) = claim_due(writer, "i1", 10, 60, now=LATER)
    record_result(writer, *outcome(claim, True, at=LATER), instance_id="i1")
    (claim,) = claim_due(writer, "i1", 10, 60, now=LATER + timedelta(days=1))
    record_result(writer, *outcome(claim, False, code=49, reason="auth_rejected"), instance_id="i1")
    stored = row(writer, proxy(1))
    assert (stored.state, stored.code, stored.reason, stored.probe) == (
        "unhealthy",
        49,
        "auth_rejected",
        "connect",
    )
    assert stored.detail == "auth_rejected detail"
    assert stored.exit_ip == "198.51.100.7"
    assert [c.code for c in history(writer)] == [None, 49]
    failed = history(writer)[1]
    assert failed.detail == "auth_rejected detail"
    assert failed.probes[0]["detail"] == "auth_rejected detail" and failed.probes[0]["error"] == "ERROR_PROXY_NOT_AUTHORISED"


def test_a_stale_token_writes_nothing(writer):
    sync_source(writer, "s", [proxy(1)], NOW)
    (old,) = claim_due(writer, "i1", 10, 60, now=LATER)
    assert claim_due(writer, "i2", 10, 60, now=LATER + timedelta(seconds=59)) == []  # lease still valid
    (new,) = claim_due(writer, "i2", 10, 60, now=LATER + timedelta(seconds=61))  # expired: taken over
    assert new.lease_token != old.lease_token

    assert not record_result(
        writer, *outcome(old, False, code=25, reason="connect_refused"), instance_id="i1"
    )
    assert history(writer) == []
    assert row(writer, proxy(1)).state == "unknown"
    assert row(writer, proxy(1)).lease_owner == "i2"
    assert record_result(writer, *outcome(new, True), instance_id="i2")
    assert not record_result(writer, *outcome(new, True), instance_id="i2")  # token used up
    assert len(history(writer)) == 1


def test_record_results_writes_a_batch_and_reports_each(writer):
    sync_source(writer, "s", [proxy(n) for n in range(3)], NOW)
    claims = claim_due(writer, "i1", 10, 60, now=LATER)
    stale = claims[1]
    claim_due(writer, "i2", 10, 60, now=LATER + timedelta(minutes=5))  # takes all three over
    (fresh,) = [
        c
        for c in claim_due(writer, "i3", 10, 60, now=LATER + timedelta(minutes=10))
        if c.proxy == claims[0].proxy
    ]
    items = [outcome(fresh, True), outcome(stale, True)]
    assert record_results(writer, items, "i3") == [True, False]
    assert record_results(writer, [], "i3") == []
    assert len(history(writer)) == 1


def test_checker_unavailable_is_refused_by_record_result(writer):
    sync_source(writer, "s", [proxy(1)], NOW)
    (claim,) = claim_due(writer, "i1", 10, 60, now=LATER)
    _, _, transition = outcome(claim, True)
    with pytest.raises(ValueError, match="reschedule_unavailable"):
        record_result(writer, claim, result(claim.proxy, None), transition, "i1")


def test_reschedule_unavailable_moves_the_check_and_nothing_else(writer):
    sync_source(writer, "s", [proxy(1), proxy(2)], NOW)
    claims = claim_due(writer, "i1", 10, 60, now=LATER)
    before = row(writer, proxy(1))
    retry = LATER + timedelta(seconds=30)
    assert reschedule_unavailable(writer, claims, retry) == 2
    after = row(writer, proxy(1))
    assert after.next_check_at == retry and after.lease_token is None
    assert (after.state, after.consecutive_failures, after.last_checked_at) == (
        before.state,
        before.consecutive_failures,
        before.last_checked_at,
    )
    assert history(writer) == []
    assert reschedule_unavailable(writer, claims, retry) == 0  # leases already gone


def test_released_claims_are_due_again_at_once(writer):
    sync_source(writer, "s", [proxy(1), proxy(2)], NOW)
    claims = claim_due(writer, "i1", 10, 600, now=LATER)
    assert release_claims(writer, claims) == 2
    assert release_claims(writer, []) == 0
    assert {c.proxy for c in claim_due(writer, "i2", 10, 60, now=LATER)} == {proxy(1), proxy(2)}


def test_claimed_state_is_the_stored_state(writer):
    sync_source(writer, "s", [proxy(1)], NOW)
    (claim,) = claim_due(writer, "i1", 10, 60, now=LATER)
    record_result(writer, *outcome(claim, False, code=27, reason="read_timeout"), instance_id="i1")
    (claim,) = claim_due(writer, "i1", 10, 60, now=LATER + timedelta(days=1))
    assert claim.state == HealthState(
        state="unhealthy", consecutive_failures=1, failing_streak=1, code=27, reason="read_timeout", changed_at=NOW
    )


def test_concurrent_claimers_never_get_the_same_proxy(engine_factory):
    # Several instances (own engines, own connections) drain the same queue at once.
    setup = engine_factory()
    sync_source(setup, "s", [proxy(n) for n in range(300)], NOW)
    engines = [engine_factory() for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    got: dict[int, list[int]] = {i: [] for i in range(len(engines))}
    errors: list[BaseException] = []

    def drain(i: int) -> None:
        try:
            barrier.wait()
            while claims := claim_due(engines[i], f"i{i}", 7, 60, now=LATER):
                got[i].extend(c.proxy_id for c in claims)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    claimed = [pid for ids in got.values() for pid in ids]
    assert len(claimed) == len(set(claimed)) == 300
    with setup.connect() as conn:
        owners = conn.execute(select(ProxyRow.lease_owner, func.count()).group_by(ProxyRow.lease_owner)).all()
    assert {owner: n for owner, n in owners} == {f"i{i}": len(ids) for i, ids in got.items() if ids}


def test_history_keeps_each_probes_phase_timings(writer):
    """Per-phase timings ride inside the row's probes JSON (no new column) and come back in
    `proxycheck history`."""
    import dataclasses

    from proxycheck.result import ProbeOutcome
    from proxycheck.store.history import proxy_history

    sync_source(writer, "s", [proxy(1)], NOW)
    (claim,) = claim_due(writer, "i1", 10, 60, now=LATER)
    claim_, res, transition = outcome(claim, False, code=27, reason="read_timeout", at=LATER)
    slow = ProbeOutcome("anonymity", False, 27, "read_timeout", "no answer", 2003.0,
                        phases={"connect": 1.26, "ttfb": 2001.74})
    res = dataclasses.replace(res, probes=(ProbeOutcome("tcp_connect", True, elapsed_ms=1.0, phases={"connect": 1.0}), slow))
    assert record_result(writer, claim_, res, transition, instance_id="i1")
    (check,) = proxy_history(writer, proxy(1).key).checks
    assert [p.get("phases") for p in check.probes] == [{"connect": 1.0}, {"connect": 1.3, "ttfb": 2001.7}]
