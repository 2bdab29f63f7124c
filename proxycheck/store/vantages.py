"""What each vantage saw of a proxy, read back from the ``checks`` rows (vantage.py).

Rules:
1. A check row's ``sights`` are what each vantage saw in that check, its own vantage first
   (never its verdict: an ``ip_locked`` row still says whether *its* vantage got in). A row
   from before 0007, or without sights, stands for its vantage by its own outcome.
2. ``peers``: for a batch of claimed proxies, the latest sight of every vantage but ours within
   the window, read in the claim's transaction (one indexed query), so daemons on one
   PostgreSQL compare what each sees (vantage.py rule 3).
3. ``latest_per_vantage``: the same for one proxy and every vantage, for ``status`` and ``history``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from ..vantage import Sight, seen
from .models import CheckRow as C
from .models import ProxyRow as P


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


def peers(conn: Connection, proxy_ids: Sequence[int], ours: str, since: datetime) -> dict[int, list[Sight]]:
    """Rule 2."""
    if not proxy_ids:
        return {}
    rows = conn.execute(
        select(C.proxy_id, C.vantage, C.vantage_ip, C.healthy, C.reason, C.checked_at, C.sights)
        .where(C.proxy_id.in_(sorted(set(proxy_ids))), C.vantage.is_not(None), C.vantage != ours, C.checked_at >= since)
        .order_by(C.checked_at.desc(), C.id.desc())
    )
    return {pid: list(by.values()) for pid, by in _latest(rows, ours).items()}


def latest_per_vantage(engine: Engine, proxy_key: str, *, limit: int = 200) -> list[Sight]:
    """Rule 3: newest first, one per vantage, among the proxy's latest ``limit`` checks."""
    with engine.begin() as conn:
        rows = conn.execute(
            select(C.proxy_id, C.vantage, C.vantage_ip, C.healthy, C.reason, C.checked_at, C.sights)
            .join(P, P.id == C.proxy_id)
            .where(P.key == proxy_key, C.vantage.is_not(None))
            .order_by(C.checked_at.desc(), C.id.desc())
            .limit(limit)
        ).all()
    by = _latest(rows, None)
    return sorted((s for v in by.values() for s in v.values()), key=lambda s: s.at, reverse=True)


__all__ = ["latest_per_vantage", "peers"]
