"""Worker reports: store what a captcha service said about a proxy, apply it under a guard rail.

Rules:
1. One report is one short transaction on the writer: read the proxy's health, let the caller's
   ``decide`` say what changes (``feedback.decide``, pure), check the guard rail, write the
   proxy and the ``reports`` row. Nothing else is held.
2. The guard rail (Envoy's ``max_ejection_percent``): within any ``window`` seconds, reports may
   take out at most ``GuardRail.budget(enabled)`` distinct proxies. Past that, reports are stored
   with ``applied = false, why_not = 'guard_rail'`` and change nothing; ``feedback_summary`` says
   so. Counting and taking out are serialised (SQLite: the writer's ``BEGIN IMMEDIATE``;
   PostgreSQL: a transaction-scoped advisory lock), so concurrent reporters cannot overshoot.
3. A stored proxy error may hold its proxy's subnet back (store/guard.py rule 4), in the same
   transaction. The lease columns are never touched. A check in flight when the report lands still writes
   back (its lease token still matches) and, being the later write, replaces the report's effect
   with its own fresh verdict: the daemon's probe has the last word.
4. Stored: proxy errors and soft failures always (applied or not); a success only when it changed
   something. Errors not about the proxy are not stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, true, update

from ..health import HealthState
from ._rows import STATE_COLUMNS, is_postgresql, state_from_row, state_values, utcnow
from .models import ProxyRow as P
from .models import ReportRow as R
from .guard import SubnetRule, hold_subnet

# pg_advisory_xact_lock key held while a report counts and takes out ("rept" in ASCII).
REPORT_LOCK_ID = 0x72657074
# Why a report changed nothing. Stored in reports.why_not: never rename one.
WHY_NOT = {
    "guard_rail": "reports already took out the most proxies the guard rail allows in the window",
    "not_healthy": "the proxy was not healthy (unknown or already unhealthy): only checks decide it",
    "disabled": "the proxy is disabled",
    "no_change": "a success on a proxy with no failure streak: nothing to learn",
}


@dataclass(frozen=True)
class GuardRail:
    """How much of the pool reports alone may take out.

    ``budget = max(1, floor(enabled × max_percent / 100))`` distinct proxies per ``window``
    seconds (as Envoy's outlier detection, at least one may always be ejected).
    """

    max_percent: float = 10.0
    window: float = 300.0

    def budget(self, enabled: int) -> int:
        return max(1, math.floor(enabled * self.max_percent / 100))


def guard_rail(worker: Any) -> GuardRail:
    """The guard rail a ``[worker]`` section (``config.Worker``) sets."""
    return GuardRail(max_percent=worker.max_reported_percent, window=worker.report_window)


@dataclass(frozen=True)
class Decision:
    """What one report does to one proxy (``feedback.decide``)."""

    applied: bool
    why_not: str | None = None
    state: HealthState | None = None  # new health to write
    next_check_at: datetime | None = None  # new next check, when it moves
    detail: str | None = None  # written with probe=None when set
    takes_out: bool = False  # healthy -> unhealthy: subject to the guard rail


@dataclass(frozen=True)
class ReportFacts:
    """The report as stored, whatever its effect."""

    kind: str  # proxy_error | soft_failure | success
    code: int | None
    error: str | None
    service_code: str | None
    worker: str | None
    service: str | None = None  # the captcha service (guard.py), when the worker named it


@dataclass(frozen=True)
class Recorded:
    found: bool  # the proxy is in the database
    stored: bool
    applied: bool
    took_out: bool
    why_not: str | None
    state: str | None  # the proxy's state after the report


def record_report(
    writer: Engine,
    key: str,
    facts: ReportFacts,
    decide: Callable[[HealthState, bool, datetime], Decision],
    guard: GuardRail,
    *,
    now: datetime | None = None,
    subnets: SubnetRule | None = None,
) -> Recorded:
    """Apply one report to the proxy with ``key`` (rules 1-4). ``decide(health, enabled,
    next_check_at)`` is pure."""
    now = now or utcnow()
    with writer.begin() as conn:
        pg = is_postgresql(conn)
        stmt = select(P.id, P.enabled, P.next_check_at, *STATE_COLUMNS).where(P.key == key)
        row = conn.execute(stmt.with_for_update() if pg else stmt).first()
        if row is None:
            return Recorded(False, False, False, False, None, None)
        health = state_from_row(row)
        decision = decide(health, bool(row.enabled), row.next_check_at)
        if decision.takes_out:
            if pg:
                conn.execute(select(func.pg_advisory_xact_lock(REPORT_LOCK_ID)))
            taken = conn.scalar(
                select(func.count(func.distinct(R.proxy_id))).where(
                    R.took_out == true(), R.reported_at >= now - timedelta(seconds=guard.window)
                )
            )
            enabled = conn.scalar(select(func.count()).where(P.enabled == true()))
            if int(taken or 0) >= guard.budget(int(enabled or 0)):
                decision = Decision(False, "guard_rail")
        values: dict[str, object] = {}
        if decision.applied:
            if decision.state is not None:
                values.update(state_values(decision.state))
                health = decision.state
            if decision.next_check_at is not None:
                values["next_check_at"] = decision.next_check_at
            if decision.detail is not None:
                values.update(detail=decision.detail, probe=None)
        if values:
            conn.execute(update(P).where(P.id == row.id).values(**values))
        store = facts.kind != "success" or decision.applied
        if store:
            conn.execute(
                insert(R).values(
                    proxy_id=row.id,
                    reported_at=now,
                    worker=facts.worker,
                    service_code=facts.service_code,
                    error=facts.error,
                    code=facts.code,
                    kind=facts.kind,
                    applied=decision.applied,
                    took_out=decision.applied and decision.takes_out,
                    why_not=decision.why_not,
                    service=facts.service,
                )
            )
            if facts.kind == "proxy_error" and subnets is not None:
                hold_subnet(conn, row.id, subnets, now, guard.budget)  # store/guard.py rule 4
    return Recorded(
        True, store, decision.applied, decision.applied and decision.takes_out, decision.why_not, health.state
    )


@dataclass(frozen=True)
class FeedbackSummary:
    """Reports in the last ``window`` seconds, for ``proxycheck status``."""

    window: float
    max_percent: float
    reports: int  # stored in the window
    applied: int
    took_out: int  # distinct proxies reports made unhealthy in the window
    held_back: int  # reports the guard rail refused in the window
    not_applied: int  # refused for other reasons (not healthy, disabled)
    budget: int  # how many proxies reports may take out per window
    enabled: int
    out_now: int  # enabled proxies unhealthy right now on a worker's word (not re-checked yet)
    by_error: tuple[tuple[str | None, int], ...]  # (error name, reports), most first
    last_report_at: datetime | None

    @property
    def at_limit(self) -> bool:
        """Reports have used the whole budget: the next take-out will be refused."""
        return self.took_out >= self.budget

    @property
    def holding(self) -> bool:
        """The guard rail refused at least one report in the window."""
        return self.held_back > 0

    def line(self) -> str:
        """One line for ``proxycheck status``."""
        minutes = f"{self.window / 60:g} min"
        if not self.reports:
            return f"feedback: no worker reports in the last {minutes}"
        text = (
            f"feedback: {self.reports} worker reports in the last {minutes}, {self.took_out} proxies taken out "
            f"(limit {self.budget} = {self.max_percent:g}% of {self.enabled})"
        )
        if self.holding:
            text += f"; GUARD RAIL HOLDING: {self.held_back} reports not applied"
        elif self.at_limit:
            text += "; at the limit: further reports will not be applied"
        return text


def feedback_summary(engine: Engine, guard: GuardRail | None = None, *, now: datetime | None = None) -> FeedbackSummary:
    guard = guard or GuardRail()
    since = (now or utcnow()) - timedelta(seconds=guard.window)
    with engine.begin() as conn:
        in_window = R.reported_at >= since
        reports, applied, held, other, last = conn.execute(
            select(
                func.count(),
                func.count().filter(R.applied == true()),
                func.count().filter(R.why_not == "guard_rail"),
                func.count().filter(R.applied != true(), R.why_not != "guard_rail"),
                func.max(R.reported_at),
            ).where(in_window)
        ).one()
        took_out = conn.scalar(select(func.count(func.distinct(R.proxy_id))).where(in_window, R.took_out == true()))
        enabled = conn.scalar(select(func.count()).where(P.enabled == true()))
        out_now = conn.scalar(
            select(func.count()).where(P.enabled == true(), P.state == "unhealthy", P.reason == "worker_report")
        )
        by_error = conn.execute(
            select(R.error, func.count().label("n")).where(in_window).group_by(R.error).order_by(func.count().desc(), R.error)
        ).all()
    return FeedbackSummary(
        window=guard.window,
        max_percent=guard.max_percent,
        reports=int(reports),
        applied=int(applied),
        took_out=int(took_out or 0),
        held_back=int(held),
        not_applied=int(other),
        budget=guard.budget(int(enabled or 0)),
        enabled=int(enabled or 0),
        out_now=int(out_now or 0),
        by_error=tuple((r.error, r.n) for r in by_error),
        last_report_at=last,
    )


@dataclass(frozen=True)
class ReportInfo:
    reported_at: datetime
    proxy_key: str  # Proxy.key: no password
    worker: str | None
    service_code: str | None
    error: str | None
    code: int | None
    kind: str
    applied: bool
    took_out: bool
    why_not: str | None


def recent_reports(engine: Engine, *, proxy_key: str | None = None, limit: int = 50) -> list[ReportInfo]:
    """Latest reports first, for all proxies or one (``history``)."""
    with engine.begin() as conn:
        stmt = (
            select(R.reported_at, P.key, R.worker, R.service_code, R.error, R.code, R.kind, R.applied, R.took_out, R.why_not)
            .join(P, P.id == R.proxy_id)
            .order_by(R.reported_at.desc(), R.id.desc())
            .limit(limit)
        )
        if proxy_key is not None:
            stmt = stmt.where(P.key == proxy_key)
        return [ReportInfo(*row) for row in conn.execute(stmt)]


def prune_reports(writer: Engine, before: datetime) -> int:
    """Delete reports older than ``before`` (keep at least the guard rail's window)."""
    with writer.begin() as conn:
        return conn.execute(delete(R).where(R.reported_at < before)).rowcount


__all__ = [
    "Decision",
    "FeedbackSummary",
    "GuardRail",
    "ReportFacts",
    "ReportInfo",
    "Recorded",
    "WHY_NOT",
    "feedback_summary",
    "guard_rail",
    "prune_reports",
    "recent_reports",
    "record_report",
]
