"""The status page's SQL (proxycheck/http_api/page/queries.py) on SQLite and PostgreSQL: history
bucketed by time in SQL, the table's filters, sorting and pages, no password in a row."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update

from proxycheck.http_api.page.queries import PAGE_SIZE, over_time, proxy_row, proxy_table
from proxycheck.store import sync_source
from proxycheck.store.exits import encode
from proxycheck.store.models import CheckRow, ExitHistoryRow, ProxyRow, WorkerLeaseRow

from .helpers import NOW, proxy

HOUR = 3600


def seed_checks(engine, checks: list[tuple[int, bool | None, int | None, float]]) -> dict[int, int]:
    """checks: (proxy n, healthy, code, hours ago); returns proxy n -> id."""
    numbers = sorted({n for n, *_ in checks})
    sync_source(engine, "s", [proxy(n) for n in numbers], NOW)
    with engine.begin() as conn:
        ids = {n: conn.scalar(select(ProxyRow.id).where(ProxyRow.key == proxy(n).key)) for n in numbers}
        conn.execute(insert(CheckRow), [
            {"proxy_id": ids[n], "checked_at": NOW - timedelta(hours=ago), "healthy": ok, "code": code, "probes": []}
            for n, ok, code, ago in checks])
    return ids


def test_over_time_counts_distinct_proxies_per_bucket(writer):
    # NOW is on the hour: 15-minute buckets; 0.1 h ago is the bucket before NOW's own.
    seed_checks(writer, [
        (1, True, None, 0.1), (1, True, None, 0.12),  # one proxy twice in a bucket: counted once
        (2, False, 25, 0.1), (3, False, 25, 0.11), (4, False, 49, 0.1), (5, None, None, 0.1),
        (1, False, 25, 2.0),  # two hours earlier
        (6, True, None, 30.0),  # outside 24 h, inside 7 d
    ])
    day = over_time(writer, "24h", now=NOW)
    at = day["t"].index(int((NOW - timedelta(minutes=15)).timestamp()))
    assert (day["states"]["healthy"][at], day["states"]["unhealthy"][at], day["states"]["unknown"][at]) == (1, 3, 1)
    assert day["codes"]["25"][at] == 2 and day["codes"]["49"][at] == 1
    two_h = day["t"].index(int((NOW - timedelta(hours=2)).timestamp()))
    assert day["states"]["unhealthy"][two_h] == 1 and day["codes"]["25"][two_h] == 1
    assert sum(day["states"]["healthy"]) == 1  # proxy 6's check is a day and more old
    assert day["step"] == 900 and len(day["t"]) == 24 * 4 + 1

    week = over_time(writer, "7d", now=NOW)
    assert sum(week["states"]["healthy"]) == 2 and week["step"] == 7200


def test_table_filters_sorts_pages_and_never_selects_the_password(writer):
    ids = seed_checks(writer, [(n, True, None, 1.0) for n in range(1, 121)])
    with writer.begin() as conn:
        conn.execute(update(ProxyRow).values(state="healthy"))
        conn.execute(update(ProxyRow).where(ProxyRow.id.in_([ids[n] for n in range(1, 11)]))
                     .values(state="unhealthy", code=25, anonymity="transparent", banned_on=["turnstile"]))
        conn.execute(update(ProxyRow).where(ProxyRow.id == ids[11]).values(enabled=False))
        conn.execute(update(ProxyRow).where(ProxyRow.id.in_([ids[n] for n in range(12, 20)])).values(latency_ms=50.0))
        seen = [(NOW - timedelta(hours=2), "198.51.100.9"), (NOW - timedelta(hours=1), "198.51.100.7"), (NOW, "198.51.100.9")]
        conn.execute(insert(ExitHistoryRow), [{"proxy_id": ids[1], "readings": encode(seen)}])

    everything = proxy_table(writer, {})
    assert everything.total == 120 and everything.pages == -(-120 // PAGE_SIZE) and len(everything.rows) == PAGE_SIZE
    last = proxy_table(writer, {}, page=99)  # past the end: the last page
    assert last.page == last.pages and len(last.rows) == 120 - PAGE_SIZE * (last.pages - 1)
    assert "password" not in everything.rows[0]._fields

    assert proxy_table(writer, {"state": "unhealthy"}).total == 10
    assert proxy_table(writer, {"state": "disabled"}).total == 1
    assert proxy_table(writer, {"state": "healthy"}).total == 120 - 10 - 1
    assert proxy_table(writer, {"code": "25", "target": "turnstile", "anonymity": "transparent", "scheme": "http"}).total == 10
    assert proxy_table(writer, {"target": "recaptcha"}).total == 0
    assert proxy_table(writer, {"tag": "nope"}).total == 0

    fastest = proxy_table(writer, {}, sort="latency").rows[:8]
    assert {r.latency_ms for r in fastest} == {50.0}
    newest_key_first = proxy_table(writer, {}, sort="proxy", descending=True).rows
    assert [r.key for r in newest_key_first] == sorted((r.key for r in newest_key_first), reverse=True)

    with writer.begin() as conn:  # a worker's check-out lease, held
        conn.execute(insert(WorkerLeaseRow), [{"id": "lease-1", "proxy_id": ids[1], "worker": "host:42", "acquired_at": NOW,
                                               "expires_at": NOW + timedelta(minutes=5), "cool_until": NOW + timedelta(minutes=6)}])
    row, exits, leases = proxy_row(writer, ids[1])
    assert [(lease.worker, lease.released_at) for lease in leases] == [("host:42", None)]
    assert "password" not in row._fields and row.banned_on == ["turnstile"]
    assert [(e.ip, e.readings, e.first, e.last) for e in exits] == [  # latest sighting first
        ("198.51.100.9", 2, NOW - timedelta(hours=2), NOW), ("198.51.100.7", 1, NOW - timedelta(hours=1), NOW - timedelta(hours=1))]
    assert proxy_row(writer, 10**9) is None
