"""History retention: the last N always stay, failures outlive successes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from proxycheck.store import apply_retention, sync_source
from proxycheck.store.models import CheckRow, ProxyRow

from .helpers import NOW, proxy


def seed(engine, histories: dict[int, list[tuple[bool | None, float]]]) -> dict[int, int]:
    """histories: proxy n -> [(healthy, days ago)]; returns proxy n -> proxy id."""
    sync_source(engine, "s", [proxy(n) for n in histories], NOW)
    with engine.begin() as conn:
        ids = {n: conn.scalar(select(ProxyRow.id).where(ProxyRow.key == proxy(n).key)) for n in histories}
        rows = [
            {"proxy_id": ids[n], "checked_at": NOW - timedelta(days=ago), "healthy": ok, "probes": []}
            for n, history in histories.items()
            for ok, ago in history
        ]
        conn.execute(insert(CheckRow), rows)
    return ids


def surviving(engine, proxy_id: int) -> list[tuple[bool | None, float]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(CheckRow.healthy, CheckRow.checked_at)
            .where(CheckRow.proxy_id == proxy_id)
            .order_by(CheckRow.checked_at.desc())
        ).all()
    return [(ok, round((NOW - at) / timedelta(days=1), 2)) for ok, at in rows]


# (history as (healthy, days ago) newest first, keep_per_proxy, expected survivors)
# Limits: successes 2 days, failures 14 days.
CASES = [
    pytest.param(
        [(True, 0.5), (True, 1), (True, 3), (True, 5), (True, 30)],
        2,
        [(True, 0.5), (True, 1)],
        id="old successes go",
    ),
    pytest.param(
        [(True, 0.5), (False, 1), (False, 3), (True, 4), (False, 13), (False, 15), (None, 20)],
        1,
        [(True, 0.5), (False, 1), (False, 3), (False, 13)],
        id="failures are kept longer than successes",
    ),
    pytest.param(
        [(False, 100), (True, 200), (True, 300)],
        3,
        [(False, 100), (True, 200), (True, 300)],
        id="the last N stay however old",
    ),
    pytest.param(
        [(True, 0.1), (True, 0.2), (True, 0.3), (False, 0.4)],
        0,
        [(True, 0.1), (True, 0.2), (True, 0.3), (False, 0.4)],
        id="recent checks stay beyond N",
    ),
]


@pytest.mark.parametrize(("history", "keep", "expected"), CASES)
def test_retention(writer, history, keep, expected):
    ids = seed(writer, {1: history})
    deleted = apply_retention(writer, NOW, keep_per_proxy=keep, keep_success_days=2, keep_failure_days=14)
    assert surviving(writer, ids[1]) == expected
    assert deleted == len(history) - len(expected)


def test_retention_works_per_proxy_across_batches(writer):
    old = [(True, 10 + i) for i in range(5)]
    ids = seed(writer, {n: old for n in range(7)})
    assert apply_retention(writer, NOW, keep_per_proxy=2, proxies_per_batch=3) == 7 * 3
    assert all(len(surviving(writer, pid)) == 2 for pid in ids.values())
    assert apply_retention(writer, NOW, keep_per_proxy=2) == 0
