"""The read side: what ``proxycheck status`` and ``get_healthy_proxy()`` need.

Rules:
1. These functions only read (one short transaction each), so they are safe on a SQLite
   reader engine while the daemon writes, and on a database the daemon is not running against.
2. What the stored checks say is read from them, at once: the last check time is the latest
   ``last_checked_at`` (taken in the same scan that counts proxies by state, so it costs no
   extra query). Only what a daemon alone knows (the checker's health) comes from the
   ``instances`` table and its heartbeats.
3. The fleet summary's cost must not grow with the width of a row: a daemon under systemd reads it
   at every heartbeat (STATUS=), Prometheus at every scrape. Counts by state, failure codes and the
   latest check come from ``ix_proxies_summary`` alone (an index-only scan), the per-target bans
   from ``ix_proxies_banned`` (only the banned rows). At 100,000 proxies on SQLite a summary read
   every row through another index and cost 0.7 s of CPU, 15 % of a core at 5 s heartbeats;
   ``tests/store/test_summary_plans.py`` keeps every query of it on these indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select, true

from ..geo import UNKNOWN, ExitGeo
from ..health import HealthState
from ..proxy import Proxy
from ._rows import PROXY_COLUMNS, STATE_COLUMNS, has_tag, is_postgresql, proxy_from_row, state_from_row, utcnow
from ..sticky import GATEWAY_TAG, ExitSummary, Stability, stability
from ..vantage import Sight
from .vantages import latest as latest_sights
from .instances import InstanceInfo, live_instances
from .models import HAS_BANS, InstanceRow
from .models import ProxyRow as P

DISPLAY_STATES = ("healthy", "unhealthy", "unknown", "disabled")


@dataclass(frozen=True)
class ProxyStatus:
    """One proxy as a status line shows it. ``proxy`` carries the password but never prints it."""

    id: int
    proxy: Proxy
    source: str
    enabled: bool
    health: HealthState
    detail: str | None
    probe: str | None
    last_checked_at: datetime | None
    last_success_at: datetime | None
    next_check_at: datetime
    latency_ms: float | None
    exit_ip: str | None
    anonymity: str | None
    resolved_ip: str | None
    lease_owner: str | None
    banned_on: tuple[str, ...] = ()  # ban targets banning it (latest ban check)
    usable_for: tuple[str, ...] = ()
    exit: ExitSummary = ExitSummary()
    geo: ExitGeo = UNKNOWN  # where exit_ip is ([geo])
    geo_mismatch: str | None = None  # verdict.MARKS: its country:XX tag names another country
    vantages: tuple[Sight, ...] = ()  # each vantage's latest sight (store/vantages.py), when asked for

    def stability(self, window: float) -> Stability:
        """Its exit IP's stability over ``[probes].sticky_seconds`` (sticky.py rule 3)."""
        return stability(self.exit, window, gateway=GATEWAY_TAG in self.proxy.tags)

    @property
    def display_state(self) -> str:
        """``disabled`` for a disabled proxy, else its health state."""
        return self.health.state if self.enabled else "disabled"


@dataclass(frozen=True)
class StatusSummary:
    counts: dict[str, int]  # every DISPLAY_STATES key; "disabled" rows are not counted by state
    total: int
    instances: tuple[InstanceInfo, ...]  # live ones, latest heartbeat first
    checker_state: str | None  # of the latest live instance; None when no daemon is running
    checker_reason: str | None
    # When checking last happened: the later of the latest stored check and the latest round a
    # daemon reported (a round whose checks are still in flight).
    last_round_at: datetime | None
    # (code, proxies) of enabled unhealthy, most first: every code (at most the few anti-captcha
    # codes), so `status`'s "failing:" line names every code its rows show
    top_codes: tuple[tuple[int, int], ...]
    overdue: int  # enabled proxies whose check is more than `overdue_after` late
    last_check_at: datetime | None = None  # start of the latest stored check of any proxy
    bans: tuple[tuple[str, int], ...] = ()  # (ban target, enabled proxies it bans), most first
    # When the most overdue proxy no daemon has claimed yet was due (None: none waits). ``now``
    # minus this is the dispatch lag: it grows when checking cannot keep up with the schedule.
    oldest_due_at: datetime | None = None


def status_summary(
    engine: Engine,
    *,
    now: datetime | None = None,
    overdue_after: float = 300.0,
    top: int | None = None,
) -> StatusSummary:
    """Counts by state, the checker's health from the latest live instance, the failure codes
    (all of them, or the ``top`` most common)."""
    now = now or utcnow()
    live = live_instances(engine, now=now)  # instances.py rules 1-2
    with engine.begin() as conn:
        counts = dict.fromkeys(DISPLAY_STATES, 0)
        checked: list[datetime] = []
        by_state = select(P.state, P.enabled, func.count(), func.max(P.last_checked_at)).group_by(P.enabled, P.state)
        for state, enabled, n, last_checked in conn.execute(by_state):
            counts[state if enabled else "disabled"] += n
            checked += [last_checked] if last_checked is not None else []
        codes = conn.execute(
            select(P.code, func.count().label("n"))
            .where(P.enabled == true(), P.state == "unhealthy", P.code.is_not(None))
            .group_by(P.code)
            .order_by(func.count().desc(), P.code)
            .limit(top)
        ).all()
        bans = _bans_by_target(conn)
        # Any instance, live or not: a `run --once` from cron has exited by the time status runs.
        reported_round = conn.scalar(select(func.max(InstanceRow.last_round_at)))
        overdue = conn.scalar(
            select(func.count()).where(
                P.enabled == true(), P.next_check_at < now - timedelta(seconds=overdue_after)
            )
        )
        # What claim_due would take next (a leased proxy is being checked, not waiting); ix_proxies_due.
        oldest_due = conn.scalar(
            select(func.min(P.next_check_at)).where(
                P.enabled == true(), P.next_check_at <= now,
                or_(P.lease_expires_at.is_(None), P.lease_expires_at <= now),
            )
        )
    latest = live[0] if live else None
    last_check = max(checked, default=None)
    last_round = max((t for t in (last_check, reported_round) if t is not None), default=None)
    return StatusSummary(
        counts=counts,
        total=sum(counts.values()),
        instances=tuple(live),
        checker_state=latest.checker_state if latest else None,
        checker_reason=latest.checker_reason if latest else None,
        last_round_at=last_round,
        top_codes=tuple((row.code, row.n) for row in codes),
        overdue=int(overdue or 0),
        last_check_at=last_check,
        bans=bans,
        oldest_due_at=oldest_due,
    )


def _bans_by_target(conn: Connection) -> tuple[tuple[str, int], ...]:
    """Enabled proxies banned per ban target (``proxies.banned_on`` expanded)."""
    expand = func.jsonb_array_elements_text if is_postgresql(conn) else func.json_each
    each = expand(P.banned_on).table_valued("value")
    n = func.count().label("n")
    rows = conn.execute(
        select(each.c.value, n).select_from(P).join(each, true()).where(P.enabled == true(), HAS_BANS)
        .group_by(each.c.value).order_by(n.desc(), each.c.value)
    ).all()
    return tuple((str(name), int(count)) for name, count in rows)


def list_proxies(
    engine: Engine,
    *,
    unhealthy_only: bool = False,
    tag: str | None = None,
    code: int | None = None,
    country: str | None = None,
    asn: int | None = None,
    include_disabled: bool = True,
    after: str | None = None,
    limit: int | None = None,
    vantages: bool = False,
) -> list[ProxyStatus]:
    """Proxies for a status listing, ordered by key. ``unhealthy_only`` means enabled and
    unhealthy; ``code`` filters on the current failure code, ``country`` and ``asn`` on where the
    exit was observed to be ([geo]; an ISO code in upper case, a number); ``after`` and ``limit`` give one
    page (keys greater than ``after``), for the HTTP endpoint's paginated ``/status``. With
    ``vantages``, each row carries every vantage's latest sight (store/vantages.py rule 3)."""
    with engine.begin() as conn:
        stmt = _status_select(conn, tags=[tag] if tag else [])
        if unhealthy_only:
            stmt = stmt.where(P.enabled == true(), P.state == "unhealthy")
        elif not include_disabled:
            stmt = stmt.where(P.enabled == true())
        if code is not None:
            stmt = stmt.where(P.code == code)
        if country is not None:
            stmt = stmt.where(P.exit_country == country)
        if asn is not None:
            stmt = stmt.where(P.exit_asn == asn)
        if after is not None:
            stmt = stmt.where(P.key > after)
        stmt = stmt.order_by(P.key)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = [_status(row) for row in conn.execute(stmt)]
        if vantages:
            seen_by = latest_sights(conn, [r.id for r in rows])
            rows = [replace(r, vantages=tuple(seen_by.get(r.id, ()))) for r in rows]
        return rows


def _status_select(conn: Connection, *, tags: list[str]) -> Any:
    stmt = select(
        P.id,
        P.key,
        P.source,
        P.enabled,
        P.detail,
        P.probe,
        P.last_checked_at,
        P.last_success_at,
        P.next_check_at,
        P.latency_ms,
        P.exit_ip,
        P.anonymity,
        P.resolved_ip,
        P.lease_owner,
        P.banned_on,
        P.usable_for,
        P.exit_ips,
        P.exit_run_seconds,
        P.exit_change_gap,
        P.exit_country,
        P.exit_asn,
        P.exit_as_org,
        P.geo_mismatch,
        *PROXY_COLUMNS,
        *STATE_COLUMNS,
    )
    for tag in tags:
        stmt = stmt.where(has_tag(conn, tag))
    return stmt


def _status(row: Any) -> ProxyStatus:
    return ProxyStatus(
        id=row.id,
        proxy=proxy_from_row(row),
        source=row.source,
        enabled=row.enabled,
        health=state_from_row(row),
        detail=row.detail,
        probe=row.probe,
        last_checked_at=row.last_checked_at,
        last_success_at=row.last_success_at,
        next_check_at=row.next_check_at,
        latency_ms=row.latency_ms,
        exit_ip=row.exit_ip,
        anonymity=row.anonymity,
        resolved_ip=row.resolved_ip,
        lease_owner=row.lease_owner,
        banned_on=tuple(row.banned_on or ()),
        usable_for=tuple(row.usable_for or ()),
        exit=ExitSummary(tuple(row.exit_ips or ()), row.exit_run_seconds, row.exit_change_gap),
        geo=ExitGeo(row.exit_country, row.exit_asn, row.exit_as_org),
        geo_mismatch=row.geo_mismatch,
    )


__all__ = [
    "DISPLAY_STATES",
    "ProxyStatus",
    "StatusSummary",
    "list_proxies",
    "status_summary",
]
