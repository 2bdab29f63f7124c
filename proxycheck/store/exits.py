"""What each check adds beyond health: per-target bans, and the exit IP over time (sticky exits).

Rules:
1. Ban targets: a check that reached the ban probe stores ``banned_on`` and ``usable_for``
   (``CheckResult.usable_for``); a check that passed every probe but bans stamps ``usable_at``.
   selection.py hands a proxy out for ``target=X`` when X is in ``usable_for`` and
   ``usable_at`` is fresh, even if other targets ban it.
2. Exit IPs: every check that learnt the exit IP adds a reading (time, IP) to
   ``exit_readings``; the last ``KEEP`` readings per proxy are kept. The proxy row carries a
   summary that does not depend on the window, so changing ``[probes].sticky_seconds`` needs no
   re-check: ``exit_ips`` (the IPs read, oldest first), ``exit_run_seconds`` (how long the latest
   IP has held: its first to its last consecutive reading) and ``exit_change_gap`` (the shortest
   time between two consecutive readings that differ; None if none does).
3. ``stability`` applies the window: ``rotating`` when a change happened within it (two
   readings less than ``sticky_seconds`` apart saw different IPs); ``stable`` when the latest IP
   has held for at least the window and no such change is on record; else ``unconfirmed`` (one
   reading, or readings too close together or too far apart to say). A proxy tagged
   ``rotating`` is a gateway: expected to rotate, never called unstable, never sticky.
   A check holds nothing open for the window: readings come from the scheduled visits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, not_, or_, select, update

from ..result import CheckResult
from ._rows import has_tag
from .models import ExitReadingRow as R
from .models import ProxyRow as P

KEEP = 12  # readings kept per proxy: an hour of 5-minute visits
GATEWAY_TAG = "rotating"  # a user's tag for a rotating gateway (rule 3)


def target_values(result: CheckResult) -> dict[str, Any]:
    """The ban-target columns a completed check sets (rule 1); {} when it learnt nothing."""
    values: dict[str, Any] = {}
    if result.targets is not None:
        values.update(banned_on=result.banned_on, usable_for=result.usable_for)
    if result.healthy or result.reason == "banned":
        values["usable_at"] = result.started_at
    return values


@dataclass(frozen=True)
class ExitSummary:
    ips: tuple[str, ...] = ()
    run_seconds: float | None = None
    change_gap: float | None = None


def summarise(readings: Sequence[tuple[datetime, str]]) -> ExitSummary:
    """Rule 2, for readings oldest first."""
    if not readings:
        return ExitSummary()
    ips = tuple(dict.fromkeys(ip for _, ip in readings))
    gaps = [(b[0] - a[0]).total_seconds() for a, b in zip(readings, readings[1:]) if a[1] != b[1]]
    latest_at, latest_ip = readings[-1]
    run_start = latest_at
    for at, ip in reversed(readings):
        if ip != latest_ip:
            break
        run_start = at
    return ExitSummary(ips, (latest_at - run_start).total_seconds(), min(gaps) if gaps else None)


def record_exit(conn: Connection, proxy_id: int, result: CheckResult) -> None:
    """Add the check's exit IP reading, keep the last ``KEEP``, refresh the row's summary."""
    if not result.exit_ip:
        return
    conn.execute(insert(R).values(proxy_id=proxy_id, seen_at=result.started_at, ip=result.exit_ip))
    rows = conn.execute(
        select(R.id, R.seen_at, R.ip).where(R.proxy_id == proxy_id).order_by(R.seen_at.desc(), R.id.desc())
    ).all()
    if len(rows) > KEEP:
        conn.execute(delete(R).where(R.id.in_([r.id for r in rows[KEEP:]])))
    summary = summarise([(r.seen_at, r.ip) for r in reversed(rows[:KEEP])])
    conn.execute(
        update(P)
        .where(P.id == proxy_id)
        .values(exit_ips=list(summary.ips), exit_run_seconds=summary.run_seconds, exit_change_gap=summary.change_gap)
    )


@dataclass(frozen=True)
class Stability:
    state: str  # stable | rotating | unconfirmed | gateway
    detail: str
    ips: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "ips": list(self.ips)}


def stability(summary: ExitSummary, window: float, *, gateway: bool = False) -> Stability:
    """Rule 3."""
    ips = summary.ips
    if gateway:
        return Stability("gateway", f"tagged {GATEWAY_TAG!r}: expected to rotate, never handed out as sticky", ips)
    if summary.change_gap is not None and summary.change_gap < window:
        return Stability("rotating", f"exit changed within {summary.change_gap:.0f} s "
                                     f"(window {window:g} s); IPs seen: {', '.join(ips)}", ips)
    if not ips:
        return Stability("unconfirmed", "no exit IP read yet", ips)
    run = summary.run_seconds or 0.0
    if run >= window:
        return Stability("stable", f"{ips[-1]} held for {run:.0f} s (window {window:g} s)", ips)
    if len(ips) > 1:
        return Stability("unconfirmed", f"exit changed between readings further apart than {window:g} s; "
                                        f"{ips[-1]} held for {run:.0f} s so far; IPs seen: {', '.join(ips)}", ips)
    return Stability("unconfirmed", f"{ips[-1]} read over {run:.0f} s so far; stable once it holds {window:g} s", ips)


def row_stability(row: Any, window: float) -> Stability:
    """``stability`` for a ``proxies`` row (needs tags and the three exit columns)."""
    summary = ExitSummary(tuple(row.exit_ips or ()), row.exit_run_seconds, row.exit_change_gap)
    return stability(summary, window, gateway=GATEWAY_TAG in (row.tags or ()))


def one_shot(result: CheckResult) -> Stability:
    """What a one-shot ``check`` can say: one reading (it keeps no history)."""
    ips = (result.exit_ip,) if result.exit_ip else ()
    if GATEWAY_TAG in result.proxy.tags:
        return Stability("gateway", f"tagged {GATEWAY_TAG!r}: expected to rotate", ips)
    if not ips:
        return Stability("unconfirmed", "no exit IP read", ips)
    return Stability("unconfirmed", "one reading: stability needs readings over [probes].sticky_seconds "
                                    "(the daemon's scheduled visits)", ips)


def sticky_clauses(conn: Connection, window: float) -> list[Any]:
    """The SQL form of "stable" (rule 3), for selection.eligible."""
    return [
        P.exit_run_seconds >= window,
        or_(P.exit_change_gap.is_(None), P.exit_change_gap >= window),
        not_(has_tag(conn, GATEWAY_TAG)),
    ]
