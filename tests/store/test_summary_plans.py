"""The fleet summary stays cheap at any fleet size (store/status.py rule 3).

A daemon under systemd reads ``status_summary`` at every heartbeat, Prometheus (through
``/metrics``) reads it and ``feedback_summary`` at every scrape. On SQLite, a query that reaches
the rows of ``proxies`` through an index reads every row it counts: 0.7 s of CPU at 100,000
proxies. The plans are checked instead of timed: SQLite's planner (no statistics) picks the same
plan for 10 rows as for 100,000, so a plan that reads every row here does so in production.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, update

from proxycheck.store import status_summary
from proxycheck.store.models import ProxyRow
from proxycheck.store.reports import feedback_summary

from .helpers import NOW, check_once, proxy
from proxycheck.store import sync_source

LATER = NOW + timedelta(hours=1)


def fleet(writer, banned: dict[int, list[str]]) -> None:
    """Proxies 1-8: 1-5 healthy, 6 and 7 unhealthy (code 28), 8 disabled; ``banned`` by number."""
    everyone = [proxy(n) for n in range(1, 9)]
    sync_source(writer, "s", everyone, NOW)
    for n in range(1, 6):
        check_once(writer, everyone[n - 1], True, at=LATER)
    for n in (6, 7):
        check_once(writer, everyone[n - 1], False, code=28, reason="banned", at=LATER)
    sync_source(writer, "s", everyone[:7], NOW)  # 8 leaves the source: disabled
    with writer.begin() as conn:
        for n, targets in banned.items():
            conn.execute(update(ProxyRow).where(ProxyRow.key == everyone[n - 1].key).values(banned_on=targets))


def test_bans_are_counted_per_target_from_the_banned_rows(writer, reader):
    fleet(writer, {6: ["recaptcha"], 7: ["recaptcha", "turnstile"], 2: ["hcaptcha"], 8: ["recaptcha"], 3: []})
    summary = status_summary(reader, now=LATER)
    # 8 is disabled: not counted; 3's empty list bans nothing.
    assert summary.bans == (("recaptcha", 2), ("hcaptcha", 1), ("turnstile", 1))
    assert summary.counts == {"healthy": 5, "unhealthy": 2, "unknown": 0, "disabled": 1}
    assert summary.top_codes == ((28, 2),)
    assert summary.last_check_at == LATER
    with writer.begin() as conn:  # an exit no longer banned (the write-back stores [])
        conn.execute(update(ProxyRow).where(ProxyRow.id.in_([2, 6])).values(banned_on=[]))
    assert status_summary(reader, now=LATER).bans == (("recaptcha", 1), ("turnstile", 1))


# A plan line on proxies is cheap when it reads the index alone, searches it by state (the
# unhealthy rows only) or by due time (claim_due's next few), or walks the banned rows' index.
CHEAP = re.compile(r"COVERING INDEX|\bstate=\?|next_check_at<\?|ix_proxies_banned")


# SQLite only: PostgreSQL's planner reads statistics, which a test fleet does not have.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_summary_query_reads_only_indexes_or_the_few_rows_it_needs(writer, reader):
    fleet(writer, {6: ["recaptcha"]})
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(reader, "before_cursor_execute", capture)
    try:
        status_summary(reader, now=LATER)
        feedback_summary(reader, now=LATER)
    finally:
        event.remove(reader, "before_cursor_execute", capture)
    costly = []
    with reader.connect() as conn:
        for statement, parameters in seen:
            if not re.search(r"\bproxies\b", statement):
                continue
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            costly += [(statement, row[-1]) for row in plan if "proxies" in row[-1] and not CHEAP.search(row[-1])]
    assert len(seen) >= 8  # both summaries ran their queries
    assert costly == []
