"""History retention: recent failures are kept longer than successes (as blackbox_exporter does).

Rule: a ``checks`` row is deleted when it is *not* among the newest ``keep_per_proxy`` rows of
its proxy **and** it is older than its age limit: ``keep_success_days`` for passes,
``keep_failure_days`` for failures. So every proxy always shows its last N checks, a flapping
proxy's failures stay visible for days, and steady successes do not fill the disk. The defaults
(20 rows, 6 hours of passes, 3 days of failures) keep a 100,000-proxy fleet's history at a few
GB; bench/daemon_bench.py measures it, bench/fleet_bench.py its cost at scale (docs/storage.md).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, false, func, or_, select, true

from ._rows import CHUNK, is_postgresql
from .models import CheckRow as C
from .models import ProxyRow as P

# pg_try_advisory_xact_lock key: one instance prunes at a time ("rtnt").
RETENTION_LOCK_ID = 0x72746E74
BATCH_SECONDS = 0.04  # a batch's target duration: what a claim may wait for it on SQLite
MAX_BATCH = CHUNK  # proxies per batch at most (the IN list stays within SQLite's parameter bound)


def apply_retention(
    engine: Engine,
    now: datetime,
    keep_per_proxy: int = 20,
    keep_success_days: float = 0.25,
    keep_failure_days: float = 3,
    *,
    proxies_per_batch: int = 100,
    batch_seconds: float = BATCH_SECONDS,
) -> int:
    """Delete expired history (see the module rule); returns the number of rows deleted.

    Works through the proxies a batch at a time, one transaction and one DELETE per batch, each
    reading only its proxies' rows (index ``proxy_id, checked_at``). The first batch has
    ``proxies_per_batch`` proxies; each next one is sized so that it takes about
    ``batch_seconds``, so no transaction holds SQLite's writer lock much longer than that
    whatever the history's size. On SQLite the lock is then left free for as long as the batch
    took, so a claim waiting in its busy handler gets it (dispatch waits one batch at most).
    On PostgreSQL, if another instance is pruning right now, this one stops and returns.
    """
    success_cut = now - timedelta(days=keep_success_days)
    failure_cut = now - timedelta(days=keep_failure_days)
    with engine.begin() as conn:
        proxy_ids = list(conn.scalars(select(P.id).order_by(P.id)))

    deleted, start, size = 0, 0, max(1, proxies_per_batch)
    while start < len(proxy_ids):
        batch = proxy_ids[start:start + size]
        start += len(batch)
        began = time.monotonic()
        with engine.begin() as conn:
            pg = is_postgresql(conn)
            if pg and not conn.scalar(select(func.pg_try_advisory_xact_lock(RETENTION_LOCK_ID))):
                break
            newest_first = (C.checked_at.desc(), C.id.desc())
            ranked = (
                select(
                    C.id,
                    C.healthy,
                    C.checked_at,
                    func.row_number().over(partition_by=C.proxy_id, order_by=newest_first).label("nth"),
                )
                .where(C.proxy_id.in_(batch))
                .subquery()
            )
            expired = or_(
                and_(ranked.c.healthy == true(), ranked.c.checked_at < success_cut),
                and_(
                    or_(ranked.c.healthy == false(), ranked.c.healthy.is_(None)),
                    ranked.c.checked_at < failure_cut,
                ),
            )
            # Chosen and deleted in the server, one statement: no ids travel to us and back.
            victims = select(ranked.c.id).where(ranked.c.nth > keep_per_proxy, expired)
            deleted += conn.execute(delete(C).where(C.id.in_(victims))).rowcount
        took = time.monotonic() - began
        size = min(MAX_BATCH, max(1, round(len(batch) * min(4.0, batch_seconds / max(took, 1e-3)))))
        if not pg:
            time.sleep(took)
    return deleted
