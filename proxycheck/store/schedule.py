"""Start-up scheduling: spread overdue checks so a restart does not check everything at once.

After downtime every proxy is overdue. Proxies that were checked before get a new
``next_check_at`` uniformly spread over ``[now, now + window)``; never-checked proxies stay due
at once (nothing is known about them, and workers cannot use them until they are checked).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, true, update

from ._rows import chunks
from .models import ProxyRow as P


def spread_overdue(engine: Engine, now: datetime, window: float, rng: random.Random) -> int:
    """Reschedule overdue, previously checked, unleased proxies over ``window`` seconds."""
    with engine.begin() as conn:
        ids = conn.scalars(
            select(P.id).where(
                P.enabled == true(), P.next_check_at < now, P.last_checked_at.is_not(None),
                P.lease_expires_at.is_(None) | (P.lease_expires_at < now),
            )
        ).all()
        for chunk in chunks(ids):
            for proxy_id in chunk:
                when = now + timedelta(seconds=rng.uniform(0, window))
                conn.execute(update(P).where(P.id == proxy_id).values(next_check_at=when))
    return len(ids)
