"""History retention: recent failures are kept longer than successes (as blackbox_exporter does).

Rule: a ``checks`` row is deleted when it is *not* among the newest ``keep_per_proxy`` rows of
its proxy **and** it is older than its age limit: ``keep_success_days`` for passes,
``keep_failure_days`` for failures. So every proxy always shows its last N checks, a flapping
proxy's failures stay visible for days, and steady successes do not fill the disk. The defaults
(20 rows, 6 hours of passes, 3 days of failures) keep a 100,000-proxy fleet's history at a few
GB; bench/daemon_bench.py measures it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, delete, false, func, or_, select, true

from ._rows import chunks, is_postgresql
from .models import CheckRow as C
from .models import ProxyRow as P

# pg_try_advisory_xact_lock key: one instance prunes at a time ("rtnt").
RETENTION_LOCK_ID = 0x72746E74


def apply_retention(
    engine: Engine,
    now: datetime,
    keep_per_proxy: int = 20,
    keep_success_days: float = 0.25,
    keep_failure_days: float = 3,
    *,
    proxies_per_batch: int = 100,
) -> int:
    """Delete expired history (see the module rule); returns the number of rows deleted.

    Works through ``proxies_per_batch`` proxies per transaction, one DELETE each, so the SQLite
    writer lock is held briefly and each batch reads only its proxies' rows (index ``proxy_id,
    checked_at``).
    On PostgreSQL, if another instance is pruning right now, this one stops and returns.
    """
    success_cut = now - timedelta(days=keep_success_days)
    failure_cut = now - timedelta(days=keep_failure_days)
    with engine.begin() as conn:
        proxy_ids = list(conn.scalars(select(P.id).order_by(P.id)))

    deleted = 0
    for batch in chunks(proxy_ids, proxies_per_batch):
        with engine.begin() as conn:
            if is_postgresql(conn) and not conn.scalar(
                select(func.pg_try_advisory_xact_lock(RETENTION_LOCK_ID))
            ):
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
    return deleted
