"""When checks are due (store.schedule): first checks of new proxies, overdue ones after a restart."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from sqlalchemy import bindparam, select, update

from proxycheck.store import sync_source
from proxycheck.store.models import ProxyRow
from proxycheck.store.schedule import first_check_times, spread_overdue

from .helpers import NOW, check_once, proxy

LATER = NOW + timedelta(days=1)


@pytest.mark.parametrize(
    ("n", "concurrency", "check_seconds", "cap", "offsets"),
    [
        (0, 50, 2.0, 300, []),
        (3, 50, 2.0, 300, [0, 0, 0]),  # fewer than the concurrency: all at once
        (5, 2, 3.0, 300, [0, 0, 3, 3, 6]),  # batch after batch
        (5, 1, 2.0, 4, [0, 1, 2, 3, 4]),  # 8 s of batches squeezed into the 4 s cap
        (3, 1, 0.0, 300, [0, 0, 0]),  # checks that take no time: no wait
    ],
)
def test_first_check_times(n, concurrency, check_seconds, cap, offsets):
    due = first_check_times(n, NOW, concurrency=concurrency, check_seconds=check_seconds, cap=cap)
    assert [(t - NOW).total_seconds() for t in due] == offsets


def test_after_a_restart_new_proxies_are_due_at_once_and_known_ones_are_spread(writer):
    """The daemon's start: sync the sources (new proxies among them), then spread the backlog."""
    known = [proxy(n) for n in range(20)]
    sync_source(writer, "s", known, NOW, spread=False)
    for p in known:
        check_once(writer, p, True, at=NOW)  # due again ~5 min later: overdue by LATER
    new = [proxy(n) for n in range(20, 30)]
    report = sync_source(writer, "s", known + new, LATER, concurrency=50)
    assert (report.added, report.first_due_at, report.last_due_at) == (10, LATER, LATER)
    assert spread_overdue(writer, LATER, 300, random.Random(1)) == 20
    due = due_times(writer)
    assert all(due[p.key] == LATER for p in new)
    moved = [due[p.key] for p in known]
    assert all(LATER <= t < LATER + timedelta(seconds=300) for t in moved) and len(set(moved)) == 20


def test_a_backlog_of_checked_proxies_is_spread_over_the_window(writer):
    everyone = [proxy(n) for n in range(30)]
    checked, never_checked = everyone[:25], everyone[25:]
    leased, not_due, overdue = checked[0], checked[-1], checked[1:-1]
    sync_source(writer, "s", everyone, NOW, spread=False)
    for p in checked:
        check_once(writer, p, True, at=NOW)  # next checks ~5 min later: overdue by LATER
    with writer.begin() as conn:
        by_key = update(ProxyRow).where(ProxyRow.key == bindparam("k"))
        conn.execute(by_key.values(next_check_at=LATER + timedelta(hours=1)), [{"k": not_due.key}])
        in_flight = {
            "lease_owner": "other",
            "lease_token": "t",
            "lease_expires_at": LATER + timedelta(minutes=1),
        }
        conn.execute(by_key.values(**in_flight), [{"k": leased.key}])
    before = due_times(writer)

    assert spread_overdue(writer, LATER, 600, random.Random(1)) == len(overdue)
    due = due_times(writer)
    moved = [due[p.key] for p in overdue]
    assert all(LATER <= t < LATER + timedelta(seconds=600) for t in moved)
    assert max(moved) - min(moved) > timedelta(seconds=300)
    unmoved = [leased, not_due, *never_checked]
    assert [due[p.key] for p in unmoved] == [before[p.key] for p in unmoved]
    assert all(due[p.key] == NOW for p in never_checked)  # nothing known: still due at once


def due_times(engine) -> dict:
    with engine.connect() as conn:
        return {r.key: r.next_check_at for r in conn.execute(select(ProxyRow.key, ProxyRow.next_check_at))}
