"""Syncing proxy lists into the table: add, update, disable (keeping history), re-enable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from proxycheck.health import HealthPolicy
from proxycheck.store import SyncReport, add_proxies, claim_due, list_proxies, record_result, sync_source
from proxycheck.store.models import CheckRow, ProxyRow

from .helpers import NOW, check_once, outcome, proxy

CSV = "csv:/etc/proxycheck/proxies.csv"
OTHER = "csv:/etc/proxycheck/more.csv"


def rows(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r.key: r._asdict() for r in conn.execute(select(ProxyRow.__table__))}


def test_new_proxies_start_unknown_and_are_due_within_seconds(writer):
    report = sync_source(writer, CSV, [proxy(n) for n in range(120)], NOW, concurrency=50)
    assert report == SyncReport(added=120)
    stored = rows(writer)
    assert {r["state"] for r in stored.values()} == {"unknown"}
    assert all(r["source"] == CSV and r["enabled"] and r["password"] == "pw" for r in stored.values())
    # No check stored yet: DEFAULT_CHECK_SECONDS (2 s) apart, 50 at a time, in list order.
    due = [stored[proxy(n).key]["next_check_at"] for n in range(120)]
    assert due == [NOW] * 50 + [NOW + timedelta(seconds=2)] * 50 + [NOW + timedelta(seconds=4)] * 20
    assert (report.first_due_at, report.last_due_at) == (NOW, NOW + timedelta(seconds=4))


def test_first_checks_follow_the_stored_check_durations(writer):
    sync_source(writer, CSV, [proxy(n) for n in range(3)], NOW)
    for n in range(3):
        check_once(writer, proxy(n), True)  # each took 200 ms (tests/store/helpers.py)
    report = sync_source(writer, CSV, [proxy(n) for n in range(3 + 120)], NOW, concurrency=50)
    assert (report.added, report.first_due_at, report.last_due_at) == (120, NOW, NOW + timedelta(seconds=0.4))


def test_a_huge_list_is_squeezed_into_one_interval(writer):
    report = sync_source(writer, CSV, [proxy(n) for n in range(1000)], NOW, concurrency=5,
                         policy=HealthPolicy(interval=60))
    due = sorted(r["next_check_at"] for r in rows(writer).values())
    assert due[:5] == [NOW] * 5 and due[-1] == NOW + timedelta(seconds=60) == report.last_due_at
    assert len(set(due)) == 200  # 200 batches of 5, each its own moment


def test_reenabled_proxies_are_scheduled_like_new_ones(writer):
    everyone = [proxy(n) for n in range(60)]
    sync_source(writer, CSV, everyone, NOW, spread=False)
    sync_source(writer, CSV, [], NOW)  # all disabled
    later = NOW + timedelta(days=1)
    report = sync_source(writer, CSV, everyone, later, concurrency=50)
    assert report == SyncReport(reenabled=60)
    due = sorted(r["next_check_at"] for r in rows(writer).values())
    assert due == [later] * 50 + [later + timedelta(seconds=2)] * 10 and report.last_due_at == due[-1]


def test_a_sync_without_new_proxies_reports_no_due_time(writer):
    sync_source(writer, CSV, [proxy(1)], NOW)
    report = sync_source(writer, CSV, [proxy(1), proxy(2, password="x")], NOW)
    assert (report.added, report.first_due_at) == (1, NOW)
    report = sync_source(writer, CSV, [proxy(1)], NOW)
    assert (report.disabled, report.first_due_at, report.last_due_at) == (1, None, None)


def test_resync_of_the_same_list_changes_nothing(writer):
    sync_source(writer, CSV, [proxy(1), proxy(2)], NOW)
    before = rows(writer)
    assert sync_source(writer, CSV, [proxy(1), proxy(2)], NOW + timedelta(hours=1)) == SyncReport(unchanged=2)
    assert rows(writer) == before


@pytest.mark.parametrize(
    ("changed", "column", "value"),
    [
        (proxy(1, password="new"), "password", "new"),
        (proxy(1, tags=frozenset({"b", "a"})), "tags", ["a", "b"]),
        (proxy(1, label="fast one"), "label", "fast one"),
    ],
)
def test_changed_fields_update_the_same_row(writer, changed, column, value):
    sync_source(writer, CSV, [proxy(1)], NOW)
    (before,) = rows(writer).values()
    later = NOW + timedelta(hours=1)
    assert sync_source(writer, CSV, [changed], later) == SyncReport(updated=1)
    (after,) = rows(writer).values()
    assert after[column] == value
    assert (after["id"], after["created_at"], after["updated_at"]) == (
        before["id"],
        before["created_at"],
        later,
    )


def test_a_changed_password_is_checked_at_once(writer):
    sync_source(writer, CSV, [proxy(1)], NOW)
    later = NOW + timedelta(hours=1)
    sync_source(writer, CSV, [proxy(1, password="new")], later)
    assert rows(writer)[proxy(1).key]["next_check_at"] <= later


def test_missing_proxies_are_disabled_and_keep_their_history(writer):
    sync_source(writer, CSV, [proxy(1), proxy(2)], NOW)
    (claim,) = [
        c for c in claim_due(writer, "i1", 10, 60, now=NOW + timedelta(hours=1)) if c.proxy == proxy(1)
    ]
    assert record_result(writer, *outcome(claim, True), instance_id="i1")

    assert sync_source(writer, CSV, [proxy(2)], NOW) == SyncReport(disabled=1, unchanged=1)
    stored = rows(writer)[proxy(1).key]
    assert not stored["enabled"] and stored["state"] == "healthy"
    with writer.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(CheckRow)) == 1
    # A disabled proxy is never checked again (proxy(2)'s lease has expired by then).
    assert [c.proxy for c in claim_due(writer, "i2", 10, 60, now=NOW + timedelta(days=1))] == [proxy(2)]


def test_disabling_fences_out_a_check_in_flight(writer):
    sync_source(writer, CSV, [proxy(1)], NOW)
    (claim,) = claim_due(writer, "i1", 10, 60, now=NOW + timedelta(hours=1))
    sync_source(writer, CSV, [], NOW)
    assert not record_result(
        writer, *outcome(claim, False, code=25, reason="connect_refused"), instance_id="i1"
    )


def test_reappearing_proxies_are_re_enabled_and_start_over(writer):
    sync_source(writer, CSV, [proxy(1)], NOW)
    (claim,) = claim_due(writer, "i1", 10, 60, now=NOW + timedelta(hours=1))
    record_result(writer, *outcome(claim, False, code=49, reason="auth_rejected"), instance_id="i1")
    sync_source(writer, CSV, [], NOW)
    later = NOW + timedelta(days=3)
    assert sync_source(writer, CSV, [proxy(1)], later) == SyncReport(reenabled=1)
    stored = rows(writer)[proxy(1).key]
    assert stored["enabled"] and stored["state"] == "unknown" and stored["code"] is None
    assert stored["state_changed_at"] == later and later <= stored["next_check_at"]


def test_a_proxy_listed_by_another_source_moves_to_it(writer):
    sync_source(writer, CSV, [proxy(1), proxy(2)], NOW)
    assert sync_source(writer, OTHER, [proxy(2)], NOW) == SyncReport(updated=1)
    # Removing it from the first file no longer disables it: it belongs to the second now.
    assert sync_source(writer, CSV, [proxy(1)], NOW) == SyncReport(unchanged=1)
    assert rows(writer)[proxy(2).key]["enabled"]
    assert rows(writer)[proxy(2).key]["source"] == OTHER


def test_the_last_row_of_a_repeated_proxy_wins(writer):
    report = sync_source(writer, CSV, [proxy(1, password="old"), proxy(1, password="new")], NOW)
    assert report == SyncReport(added=1)
    assert rows(writer)[proxy(1).key]["password"] == "new"


def test_add_proxies_adds_and_updates_but_never_disables(writer):
    sync_source(writer, CSV, [proxy(1), proxy(2)], NOW)
    report = add_proxies(writer, [proxy(2, password="new"), proxy(3)], now=NOW)
    assert report == SyncReport(added=1, updated=1)
    stored = rows(writer)
    assert all(r["enabled"] for r in stored.values())
    assert (stored[proxy(2).key]["source"], stored[proxy(3).key]["source"]) == (CSV, "cli")


def test_add_proxies_adopts_a_disabled_proxy(writer):
    sync_source(writer, CSV, [proxy(1)], NOW)
    sync_source(writer, CSV, [], NOW)
    assert add_proxies(writer, [proxy(1)], now=NOW) == SyncReport(reenabled=1)
    assert rows(writer)[proxy(1).key]["source"] == "cli"
    assert sync_source(writer, CSV, [], NOW) == SyncReport()  # the CSV no longer owns it


def test_sync_handles_more_proxies_than_one_in_list(writer):
    many = [proxy(n) for n in range(1234)]
    assert sync_source(writer, CSV, many, NOW) == SyncReport(added=1234)
    assert sync_source(writer, CSV, many[:1000], NOW) == SyncReport(unchanged=1000, disabled=234)
    assert len(list_proxies(writer, include_disabled=False)) == 1000


def test_statement_errors_never_show_passwords(writer):
    add_proxies(writer, [proxy(1, password="s3cret-pw")], now=NOW)
    values = {**rows(writer)[proxy(1).key]}
    del values["id"]
    with pytest.raises(IntegrityError) as info, writer.begin() as conn:
        conn.execute(insert(ProxyRow), [values])  # duplicate key
    assert "s3cret-pw" not in str(info.value)
    assert "hidden" in str(info.value)


def test_imported_proxies_are_scheduled_like_synced_ones(writer):
    report = add_proxies(writer, [proxy(1)], now=NOW)
    assert rows(writer)[proxy(1).key]["next_check_at"] == NOW == report.first_due_at
    report = add_proxies(writer, [proxy(n) for n in range(2, 40)], now=NOW, concurrency=10)
    stored = rows(writer)
    assert [stored[proxy(n).key]["next_check_at"] for n in range(2, 40)][9:11] == [NOW, NOW + timedelta(seconds=2)]
    assert report.last_due_at == NOW + timedelta(seconds=6)  # 38 proxies: 4 batches of 10


def test_sync_can_make_new_proxies_due_at_once(writer):
    # `proxycheck run --once` checks everything now.
    sync_source(writer, CSV, [proxy(n) for n in range(5)], NOW, spread=False)
    assert {r["next_check_at"] for r in rows(writer).values()} == {NOW}
