"""Start-up spreading of overdue checks (store.schedule)."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import bindparam, select, update

from proxycheck.store import sync_source
from proxycheck.store.models import ProxyRow
from proxycheck.store.schedule import spread_overdue

from .helpers import NOW, check_once, proxy

LATER = NOW + timedelta(days=1)


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
