"""Exit IP readings per proxy (store/exits.py): kept, pruned, summarised, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from proxycheck.proxy import Proxy
from proxycheck.result import CheckResult
from proxycheck.store import add_proxies, list_proxies
from proxycheck.store.exits import KEEP, record_exits
from proxycheck.store.models import ExitReadingRow, ProxyRow

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
            record_exits(conn, [(ids[a.key], result(a, at, B if n == 1 else A)), (ids[b.key], result(b, at, None))])
        with writer.begin() as conn:
            kept = conn.scalar(select(func.count()).select_from(ExitReadingRow).where(ExitReadingRow.proxy_id == ids[a.key]))
        assert kept == min(n + 1, KEEP)
        rows = {r.proxy.key: r for r in list_proxies(writer)}
        state = rows[a.key].stability(120.0).state
        # Rotating while both readings of the 30 s change are kept; then stable (A for > 120 s).
        assert state == ("unconfirmed" if n == 0 else "rotating" if n < KEEP else "stable"), (n, rows[a.key].exit)
    assert rows[b.key].exit.ips == () and rows[b.key].stability(120.0).state == "unconfirmed"
    assert rows[a.key].exit.ips == (A,)
