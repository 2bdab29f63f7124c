"""What each vantage saw of a proxy, read back from the ``checks`` rows (vantage.py).

Rules:
1. A check row's ``sights`` are what each vantage saw in that check, its own vantage first
   (never its verdict: an ``ip_locked`` row still says whether *its* vantage got in). A row
   from before 0007, or without sights, stands for its vantage by its own outcome.
2. ``peers``: for a batch of claimed proxies, the latest sight of every vantage but ours within
   the window, read in the claim's transaction (one indexed query), so daemons on one
   PostgreSQL compare what each sees (vantage.py rule 3).
3. ``latest``: each vantage's latest check of some proxies, however old, for ``status``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from ..vantage import Sight, seen
from ._rows import chunks
from .models import CheckRow as C


def _sights(row: Any) -> list[Sight]:
    """Rule 1 for one row."""
    if row.sights:
        return [Sight.from_dict(d) for d in row.sights]
    return [Sight(row.vantage, row.vantage_ip, seen(row.healthy, row.reason), row.reason, row.checked_at)]


def _latest(rows: Iterable[Any], ours: str | None) -> dict[int, dict[str, Sight]]:
    """proxy id -> vantage -> its latest sight (rows newest first)."""
    out: dict[int, dict[str, Sight]] = {}
    for row in rows:
        mine = out.setdefault(row.proxy_id, {})
        for sight in _sights(row):
            if sight.vantage != ours and sight.vantage not in mine:
                mine[sight.vantage] = sight
    return out


def _columns() -> tuple[Any, ...]:
    return C.proxy_id, C.vantage, C.vantage_ip, C.healthy, C.reason, C.checked_at, C.sights


def peers(conn: Connection, proxy_ids: Sequence[int], ours: str, since: datetime) -> dict[int, list[Sight]]:
    """Rule 2: each other vantage's latest sight since ``since``, newest first."""
    out: dict[int, list[Sight]] = {}
    for ids in chunks(sorted(set(proxy_ids))):
        rows = conn.execute(
            select(*_columns())
            .where(C.proxy_id.in_(ids), C.vantage.is_not(None), C.vantage != ours, C.checked_at >= since)
            .order_by(C.checked_at.desc(), C.id.desc()))
        out.update({pid: list(by.values()) for pid, by in _latest(rows, ours).items()})
    return out


def latest(conn: Connection, proxy_ids: Sequence[int]) -> dict[int, list[Sight]]:
    """Rule 3: each vantage's latest check of these proxies (however old: a sight says when), newest
    first; the (proxy_id, vantage, checked_at) index finds each without reading the history."""
    out: dict[int, list[Sight]] = {}
    for ids in chunks(sorted(set(proxy_ids))):
        last = (select(C.proxy_id.label("pid"), C.vantage.label("v"), func.max(C.checked_at).label("at"))
                .where(C.proxy_id.in_(ids), C.vantage.is_not(None)).group_by(C.proxy_id, C.vantage).subquery())
        rows = conn.execute(
            select(*_columns())
            .join(last, and_(C.proxy_id == last.c.pid, C.vantage == last.c.v, C.checked_at == last.c.at))
            .order_by(C.checked_at.desc(), C.id.desc()))
        out.update({pid: list(by.values()) for pid, by in _latest(rows, None).items()})
    return out


__all__ = ["latest", "peers"]
