"""What each check adds beyond health: per-target bans, and the exit IP over time (sticky exits).

Rules:
1. Ban targets: a check that reached the ban probe stores ``banned_on`` and ``usable_for``
   (``CheckResult.usable_for``); a check that passed every probe but bans stamps ``usable_at``.
   selection.py hands a proxy out for ``target=X`` when X is in ``usable_for`` and
   ``usable_at`` is fresh, even if other targets ban it.
2. Exit IPs (the rules are proxycheck/sticky.py's): every check that learnt the exit IP adds a
   reading (time, IP) to its proxy's row of ``exit_histories``, which keeps the last ``KEEP``
   (one JSON list per proxy: one read and one upsert per batch of checks, not a row per reading
   to insert, read back and prune; issue 21's sixth pass). The
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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..result import CheckResult
from ..sticky import DEFAULT_WINDOW, GATEWAY_TAG, follow_up_at, summarise
from ._rows import chunks
from .eligibility import usable
from .models import ExitHistoryRow as H

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
    """Add each check's exit IP reading and keep the last ``KEEP`` per proxy (one read and one
    upsert per batch, whatever its size: record_results writes in batches); return each proxy's
    new summary and, with ``follow_up``, the visits sticky.py rule 6 wants soon."""
    window = follow_up.window if follow_up else DEFAULT_WINDOW
    new: dict[int, list[tuple[datetime, str]]] = {}
    for pid, r in checked:
        if r.exit_ip:
            new.setdefault(pid, []).append((r.started_at, r.exit_ip))
    if not new:
        return Found()
    docs = _docs(conn, new)
    wanted = {pid for pid, r in checked if _wants_follow_up(r)} if follow_up else set()
    found, rows = Found(), []
    for pid, seen in sorted(new.items()):  # id order: the upsert takes row locks as _leases_held did
        doc = docs.get(pid, [])
        kept, out = decode(doc) + seen, [*doc, *encode(seen)]  # the kept readings' text is written back as read
        if any(b[0] < a[0] for a, b in zip(kept, kept[1:])):  # a reading older than a kept one (rare): in time order
            order = sorted(range(len(kept)), key=lambda i: kept[i][0])  # stable: ties keep their order
            kept, out = [kept[i] for i in order], [out[i] for i in order]
        kept, out = kept[-KEEP:], out[-KEEP:]
        rows.append({"proxy_id": pid, "readings": out})
        summary = summarise(kept, window)
        at = follow_up_at(kept, window, follow_up.refresh, summary) if follow_up and pid in wanted else None
        if at is not None:
            found.follow_ups[pid] = at
        found.summaries[pid] = {"exit_ips": list(summary.ips), "exit_run_seconds": summary.run_seconds,
                                "exit_change_gap": summary.change_gap}
    conn.execute(_UPSERT[conn.dialect.name], rows)
    return found


def readings(conn: Connection, proxy_ids: Iterable[int]) -> dict[int, list[tuple[datetime, str]]]:
    """proxy id -> its kept readings (time, IP), oldest first; proxies with none are absent."""
    return {pid: decode(doc) for pid, doc in _docs(conn, proxy_ids).items()}


def _docs(conn: Connection, proxy_ids: Iterable[int]) -> dict[int, list[list[str]]]:
    found: dict[int, list[list[str]]] = {}
    for chunk in chunks(sorted(set(proxy_ids))):
        found.update((pid, doc) for pid, doc in conn.execute(select(H.proxy_id, H.readings).where(H.proxy_id.in_(chunk))))
    return found


def encode(kept: Sequence[tuple[datetime, str]]) -> list[list[str]]:
    """``exit_histories.readings`` for readings oldest first: ``[[ISO 8601 UTC, ip], ...]``."""
    out = []
    for at, ip in kept:
        if at.utcoffset() is None:
            raise ValueError(f"naive datetime {at!r}: proxycheck stores aware UTC datetimes only")
        out.append([at.astimezone(UTC).isoformat(timespec="microseconds"), ip])  # one width: text order is time order
    return out


def decode(doc: Sequence[Sequence[str]]) -> list[tuple[datetime, str]]:
    return [(datetime.fromisoformat(at), ip) for at, ip in doc]


@dataclass(frozen=True)
class IPSeen:
    """One exit IP among a proxy's kept readings (the status page's table of exits)."""

    ip: str
    readings: int
    first: datetime
    last: datetime


def by_ip(kept: Sequence[tuple[datetime, str]]) -> list[IPSeen]:
    """Each IP of ``kept`` with its count and first and last sighting, latest sighting first."""
    seen: dict[str, IPSeen] = {}
    for at, ip in kept:
        old = seen.get(ip)
        seen[ip] = IPSeen(ip, 1, at, at) if old is None else IPSeen(ip, old.readings + 1, min(old.first, at), max(old.last, at))
    return sorted(seen.values(), key=lambda s: s.last, reverse=True)


def _upsert(insert: Any) -> Any:
    stmt = insert(H)
    return stmt.on_conflict_do_update(index_elements=[H.proxy_id], set_={"readings": stmt.excluded.readings})


_UPSERT = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}


def _wants_follow_up(result: CheckResult) -> bool:
    """Rule 2: a usable proxy (one handed out for some target) the user did not tag a gateway."""
    return usable(bool(result.healthy), result.reason) and GATEWAY_TAG not in result.proxy.tags


__all__ = ["KEEP", "FollowUp", "Found", "IPSeen", "by_ip", "decode", "encode", "readings", "record_exits", "target_values"]
