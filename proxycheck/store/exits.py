"""What each check adds beyond health: per-target bans, and the exit IP over time (sticky exits).

Rules:
1. Ban targets: a check that reached the ban probe stores ``banned_on`` and ``usable_for``
   (``CheckResult.usable_for``); a check that passed every probe but bans stamps ``usable_at``.
   selection.py hands a proxy out for ``target=X`` when X is in ``usable_for`` and
   ``usable_at`` is fresh, even if other targets ban it.
2. Exit IPs (the rules are proxycheck/sticky.py's): every check that learnt the exit IP adds a
   reading (time, IP) to ``exit_readings``; the last ``KEEP`` readings per proxy are kept. The
   proxy row carries their summary for the window configured at that visit (sticky.py rules
   2-3): ``exit_ips`` (the IPs read, the latest last), ``exit_run_seconds`` (the span of the
   latest IP's longest chain of readings less than the window apart) and ``exit_change_gap``
   (the shortest time between two consecutive readings that differ; None if none does). After
   ``[probes].sticky_seconds`` changes, each proxy is re-summarised at its next visit.
   ``record_exits`` returns the summaries; the write path puts them in the same UPDATE of the
   row as the check's state. With a ``FollowUp`` it also says which proxies sticky.py rule 6 wants visited
   again soon: usable ones (healthy, or banned only on some targets: ``eligibility.usable``)
   not tagged as gateways. Which of them may be handed out as sticky is eligibility.py's rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from ..result import CheckResult
from ..sticky import DEFAULT_WINDOW, GATEWAY_TAG, follow_up_at, summarise
from ._rows import chunks
from .eligibility import usable
from .models import ExitReadingRow as R

KEEP = 20  # readings kept per proxy: a confirmed chain and the ~14 visits until it is re-proved (rule 2)


def target_values(result: CheckResult) -> dict[str, Any]:
    """The ban-target columns a completed check sets (rule 1); {} when it learnt nothing."""
    values: dict[str, Any] = {}
    if result.targets is not None:
        values.update(banned_on=result.banned_on, usable_for=result.usable_for)
    if usable(bool(result.healthy), result.reason) or result.locked_working:  # the latter: eligibility.py, allow_ip_locked
        values["usable_at"] = result.started_at
    return values


@dataclass(frozen=True)
class FollowUp:
    """``[probes].sticky_seconds`` and ``[probes].sticky_refresh``, as the write path needs them."""

    window: float = DEFAULT_WINDOW
    refresh: float = 3600.0


@dataclass(frozen=True)
class Found:
    """What a batch's readings say, by proxy id: the row's exit summary columns (rule 2), and
    when sticky.py rule 6 wants the proxy read again soon. The caller writes them with the
    check's state (leases.record_results: one UPDATE per proxy row)."""

    summaries: dict[int, dict[str, Any]] = field(default_factory=dict)
    follow_ups: dict[int, datetime] = field(default_factory=dict)


def record_exits(conn: Connection, checked: Sequence[tuple[int, CheckResult]],
                 follow_up: FollowUp | None = None) -> Found:
    """Add each check's exit IP reading and keep the last ``KEEP`` per proxy (three statements
    per batch, whatever its size: record_results writes in batches); return each proxy's new
    summary and, with ``follow_up``, the visits sticky.py rule 6 wants soon."""
    window = follow_up.window if follow_up else DEFAULT_WINDOW
    readings = [{"proxy_id": pid, "seen_at": r.started_at, "ip": r.exit_ip} for pid, r in checked if r.exit_ip]
    if not readings:
        return Found()
    conn.execute(insert(R), readings)
    ids = sorted({r["proxy_id"] for r in readings})
    by_proxy: dict[int, list[Any]] = {}
    for chunk in chunks(ids):
        rows = conn.execute(
            select(R.id, R.proxy_id, R.seen_at, R.ip).where(R.proxy_id.in_(chunk)).order_by(R.proxy_id, R.seen_at, R.id)
        )
        for row in rows:
            by_proxy.setdefault(row.proxy_id, []).append(row)
    stale = [row.id for rows in by_proxy.values() for row in rows[:-KEEP]]
    for chunk in chunks(stale):
        conn.execute(delete(R).where(R.id.in_(chunk)))
    found = Found()
    wanted = {pid for pid, r in checked if _wants_follow_up(r)} if follow_up else set()
    for pid, rows in by_proxy.items():
        kept = [(row.seen_at, row.ip) for row in rows[-KEEP:]]
        summary = summarise(kept, window)
        at = follow_up_at(kept, window, follow_up.refresh, summary) if follow_up and pid in wanted else None
        if at is not None:
            found.follow_ups[pid] = at
        found.summaries[pid] = {"exit_ips": list(summary.ips), "exit_run_seconds": summary.run_seconds,
                                "exit_change_gap": summary.change_gap}
    return found


def _wants_follow_up(result: CheckResult) -> bool:
    """Rule 2: a usable proxy (one handed out for some target) the user did not tag a gateway."""
    return usable(bool(result.healthy), result.reason) and GATEWAY_TAG not in result.proxy.tags


__all__ = ["KEEP", "FollowUp", "Found", "record_exits", "target_values"]
