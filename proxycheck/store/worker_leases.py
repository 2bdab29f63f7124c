"""Check-out leases for workers: hold a proxy for the length of a solve, across every process.

Not the daemon's check lease (``proxies.lease_*``, store/leases.py): that one says which daemon
is checking a proxy; this one says which worker is sending tasks through it.

Rules:
1. A lease row is *held* while ``released_at`` is NULL and ``expires_at`` is ahead. A lease
   nobody releases (the worker died, the solve hung) frees itself at ``expires_at``: nothing
   has to sweep it. Every lease then *cools* its proxy until ``cool_until`` (release time, or
   expiry, plus ``[worker].cooldown_seconds``).
2. A proxy may be leased iff ``Eligibility`` with ``leases`` admits it (eligibility.py, the one
   definition: eligible for the caller's filters, fewer than ``max_concurrent`` leases on it
   held, and no ended lease on it still cooling: ``free``). So with ``cooldown_seconds`` a
   proxy rests after each use, however many slots it has.
3. Acquiring is one transaction that picks, re-checks and inserts:
   - SQLite: the writer engine's ``BEGIN IMMEDIATE`` takes the one write lock first, so
     acquirers run one at a time and the pick sees every committed lease.
   - PostgreSQL: the pick locks the proxy row ``FOR UPDATE SKIP LOCKED`` (a concurrent acquirer
     takes the next proxy instead of waiting), then ``free`` is re-read in a new statement. Under
     READ COMMITTED that statement sees every lease committed by whoever held the row lock before
     us; the pick's own snapshot may be older. Every acquirer locks the row before inserting, so
     the count cannot go over ``max_concurrent``.
   The pick also counts a hand-out (``use_count``, ``last_used_at``), like ``least_used``.
4. Ended, cooled rows are deleted by the next acquire (indexed on ``cool_until``).
5. Times come from the caller's clock (one clock per pool, so tests can use a fake one); the
   hosts of a multi-host fleet should keep their clocks in sync (NTP), as for ``max_age``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, insert, or_, select, update

from ..proxy import Proxy
from ._rows import is_postgresql
from .eligibility import Eligibility, free, held
from .models import ProxyRow as P
from .models import WorkerLeaseRow as L
from .selection import ORDERS, WORKER_COLUMNS, worker_proxy

MAX_ATTEMPTS = 8  # PostgreSQL: candidates re-checked per acquire before answering "none free"


@dataclass(frozen=True)
class Lease:
    """A held check-out: ``id`` is the handle to release it with."""

    id: str
    proxy: Proxy
    acquired_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class HeldLease:
    """A lease as ``status`` shows it (no password)."""

    id: str
    proxy_key: str
    worker: str | None
    acquired_at: datetime
    expires_at: datetime


def acquire(
    writer: Engine,
    eligibility: Eligibility,
    *,
    ttl: float,
    cooldown: float,
    worker: str | None = None,
    order: str = "least_used",
) -> Lease | None:
    """Lease one proxy ``eligibility`` (with its ``leases``) admits for ``ttl`` seconds (rules
    2-3); None when none is free. ``order``: a key of ``selection.ORDERS`` or ``random``."""
    assert eligibility.leases is not None, "a lease needs the lease limits"
    now, max_concurrent = eligibility.leases.now, eligibility.leases.max_concurrent
    expires = now + timedelta(seconds=ttl)
    ordering: Iterable[Any] = (func.random(),) if order == "random" else ORDERS[order]
    tried: list[int] = []
    with writer.begin() as conn:
        pg = is_postgresql(conn)
        conn.execute(delete(L).where(L.cool_until <= now))  # rule 4
        for _ in range(MAX_ATTEMPTS if pg else 1):
            pick = select(P.id).where(eligibility.clause(conn))
            if tried:
                pick = pick.where(P.id.not_in(tried))
            pick = pick.order_by(*ordering).limit(1)
            if pg:
                pick = pick.with_for_update(of=P, skip_locked=True)
            proxy_id = conn.scalar(pick)
            if proxy_id is None:
                return None
            if pg and not conn.scalar(select(free(proxy_id, now, max_concurrent))):
                tried.append(proxy_id)  # taken since our snapshot: rule 3
                continue
            lease_id = uuid.uuid4().hex
            conn.execute(insert(L).values(
                id=lease_id, proxy_id=proxy_id, worker=worker, acquired_at=now, expires_at=expires,
                cool_until=expires + timedelta(seconds=cooldown),
            ))
            row = conn.execute(
                update(P).where(P.id == proxy_id).values(use_count=P.use_count + 1, last_used_at=now)
                .returning(*WORKER_COLUMNS)
            ).one()
            return Lease(lease_id, worker_proxy(row), now, expires)
    return None


def release(writer: Engine, lease_id: str, *, cooldown: float, now: datetime) -> bool:
    """End a held lease now; its proxy cools for ``cooldown`` seconds. False when the lease is
    unknown, already released or expired (an expired lease already freed itself: rule 1)."""
    with writer.begin() as conn:
        done = conn.execute(
            update(L).where(L.id == lease_id, held(now))
            .values(released_at=now, cool_until=now + timedelta(seconds=cooldown))
        )
        return bool(done.rowcount)


def proxy_key_of(engine: Engine, lease_id: str) -> str | None:
    """The key of the proxy lease ``lease_id`` is (or was) on; None once it is gone."""
    with engine.begin() as conn:
        return conn.scalar(select(P.key).join(L, L.proxy_id == P.id).where(L.id == lease_id))


def held_leases(engine: Engine, *, now: datetime, limit: int | None = None) -> list[HeldLease]:
    """Leases held at ``now``, oldest first (for ``status``)."""
    with engine.begin() as conn:
        stmt = (select(L.id, P.key, L.worker, L.acquired_at, L.expires_at).join(P, P.id == L.proxy_id)
                .where(held(now)).order_by(L.acquired_at, L.id))
        if limit is not None:
            stmt = stmt.limit(limit)
        return [HeldLease(*row) for row in conn.execute(stmt)]


@dataclass(frozen=True)
class LeaseSummary:
    """What ``status`` shows: leases held (the oldest ``limit`` of them) and proxies cooling."""

    held: int
    cooling: int
    leases: tuple[HeldLease, ...]


def lease_summary(engine: Engine, *, now: datetime, limit: int = 200) -> LeaseSummary:
    n_held, cooling = lease_counts(engine, now=now)
    return LeaseSummary(n_held, cooling, tuple(held_leases(engine, now=now, limit=limit)) if n_held else ())


def lease_counts(engine: Engine, *, now: datetime) -> tuple[int, int]:
    """(leases held, proxies cooling down after a lease) at ``now``."""
    with engine.begin() as conn:
        n_held = conn.scalar(select(func.count()).select_from(L).where(held(now)))
        cooling = conn.scalar(
            select(func.count(func.distinct(L.proxy_id))).where(L.cool_until > now, or_(L.released_at.is_not(None), L.expires_at <= now))
        )
    return int(n_held or 0), int(cooling or 0)


__all__ = ["HeldLease", "Lease", "LeaseSummary", "acquire", "free", "held", "held_leases", "lease_counts", "lease_summary", "proxy_key_of", "release"]
