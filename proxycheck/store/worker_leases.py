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
   held, and no ended lease on it still cooling: ``free``, ``held``, ``cooling`` live there too).
   So with ``cooldown_seconds`` a proxy rests after each use, however many slots it has.
3. Acquiring picks, re-checks and inserts:
   - SQLite: one transaction; the writer engine's ``BEGIN IMMEDIATE`` takes the one write lock
     first, so acquirers run one at a time and the pick sees every committed lease.
   - PostgreSQL: one short transaction per candidate. The pick reads the first
     ``CANDIDATES`` the rule admits *without* locking, so a proxy another acquirer has locked
     still counts (its lease is not committed): "none free" is only ever the answer of a pick
     that skipped nothing, and a refusal applies the rule once. Then the first of them not
     locked is locked ``FOR UPDATE SKIP LOCKED`` (a concurrent acquirer takes the next proxy
     instead of waiting), or, when all are, the first is locked *waiting* (``FOR UPDATE``).
     After the lock the rule (``free`` included) is re-read for that row in a new statement,
     which under READ COMMITTED (engine.py rule 6) sees every lease committed by whoever held
     the row lock before us; if the slot went meanwhile, the transaction ends (releasing the
     lock) and the next candidate is tried. Every acquirer locks the row before inserting, so
     the count cannot go over ``max_concurrent``.
   The pick also counts a hand-out (``use_count``, ``last_used_at``), like ``least_used``.
4. Ended, cooled rows are deleted by the next acquire (indexed on ``cool_until``). With
   ``cooldown_seconds = 0`` an ended lease never cools, however the clocks compare.
5. Lease times (acquired, expires, released, cools until, and the "now" they are compared with)
   come from one clock per database, read once the acquirer or releaser holds its lock: the
   database's own clock on PostgreSQL, so workers on hosts whose clocks disagree still agree on
   who holds what; the caller's clock on SQLite (one host). ``clock=`` overrides it (tests).
   Freshness (``max_age``) is judged by the worker's clock, so hosts should still run NTP.
6. ``release`` ends a held lease once: a second release, or one of an unknown or expired id,
   changes nothing and says so, and the caller reports the outcome only for the release that
   ended the lease (worker/pool.py), so one lease gives at most one report.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Engine, case, delete, func, insert, select, update

from ..proxy import Proxy
from ._rows import is_postgresql, utcnow
from .eligibility import LEASE_CLOCK, Eligibility, cooling, free, held
from .models import ProxyRow as P
from .models import WorkerLeaseRow as L
from .selection import ORDERS, WORKER_COLUMNS, worker_proxy

if TYPE_CHECKING:
    from ..feedback import ReportResult

CANDIDATES = 16  # PostgreSQL: candidates a pick reads, so concurrent acquirers lock different ones


@dataclass(frozen=True)
class Lease:
    """A held check-out: ``id`` is the handle to release it with."""

    id: str
    proxy: Proxy
    acquired_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Released:
    """What ``release`` did: ``released`` when this call ended the held lease (true as a bool),
    ``report`` the outcome's report, made only then (rule 6). ``reported``: a report was stored."""

    released: bool
    report: ReportResult | None = None

    def __bool__(self) -> bool:
        return self.released

    @property
    def reported(self) -> bool:
        return self.report is not None and self.report.stored


@dataclass(frozen=True)
class HeldLease:
    """A lease as ``status`` shows it (no password)."""

    id: str
    proxy_key: str
    worker: str | None
    acquired_at: datetime
    expires_at: datetime


Clock = Callable[[], datetime]


def _now(conn: Connection, clock: Clock | None) -> datetime:
    """The lease clock (rule 5), read now: call it once the caller holds its lock."""
    if clock is not None:
        return clock()
    if is_postgresql(conn):
        return conn.scalar(select(func.clock_timestamp()))  # type: ignore[no-any-return]
    return utcnow()


def acquire(
    writer: Engine,
    eligibility: Eligibility,
    *,
    ttl: float,
    cooldown: float,
    clock: Clock | None = None,
    worker: str | None = None,
    order: str = "least_used",
) -> Lease | None:
    """Lease one proxy ``eligibility`` (with its ``leases``) admits for ``ttl`` seconds (rules
    2-3); None when none is free. The lease limits are judged at the lease clock read inside the
    transaction (rule 5; ``clock`` overrides it), whatever ``eligibility.leases.now`` was.
    ``order``: a key of ``selection.ORDERS`` or ``random``."""
    assert eligibility.leases is not None, "a lease needs the lease limits"
    ordering: Iterable[Any] = (func.random(),) if order == "random" else ORDERS[order]
    tried: list[int] = []
    while True:
        with writer.begin() as conn:
            pg = is_postgresql(conn)
            # SQLite holds the write lock already: its clock is read after every committed lease.
            # PostgreSQL's pick compares with the time its snapshot was taken.
            pick_now: Any = LEASE_CLOCK if pg and clock is None else _now(conn, clock)
            conn.execute(delete(L).where(L.cool_until <= pick_now))  # rule 4
            pick = select(P.id).where(eligibility.leased_at(pick_now).clause(conn))
            if tried:
                pick = pick.where(P.id.not_in(tried))
            pick = pick.order_by(*ordering).limit(1)
            if not pg:
                proxy_id, now = conn.scalar(pick), pick_now
            else:
                # The rule is applied once, without locking: a row another acquirer holds locked is
                # still a candidate here (its lease is not committed), so no candidate means none free.
                candidates = list(conn.scalars(pick.limit(CANDIDATES)))
                if not candidates:
                    return None
                ranks = {proxy: rank for rank, proxy in enumerate(candidates)}
                lock = select(P.id).where(P.id.in_(candidates)).order_by(case(ranks, value=P.id)).limit(1)
                proxy_id = conn.scalar(lock.with_for_update(of=P, skip_locked=True))
                if proxy_id is None:  # all locked by other acquirers: wait for the first (rule 3)
                    proxy_id = conn.scalar(lock.with_for_update(of=P))
                if proxy_id is None:  # deleted (sync) while we waited: pick again
                    continue
                now = _now(conn, clock)
                if conn.scalar(select(P.id).where(P.id == proxy_id, eligibility.leased_at(now).clause(conn))) is None:
                    tried.append(proxy_id)  # its slot went while we waited: commit, unlock, try the next
                    continue
            if proxy_id is None:
                return None
            expires = now + timedelta(seconds=ttl)
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


def release(writer: Engine, lease_id: str, *, cooldown: float, clock: Clock | None = None) -> bool:
    """End a held lease now; its proxy cools for ``cooldown`` seconds. False when the lease is
    unknown, already released or expired (an expired lease already freed itself: rule 1), so
    only one release of a lease answers True (rule 6)."""
    with writer.begin() as conn:
        now = _now(conn, clock)
        done = conn.execute(
            update(L).where(L.id == lease_id, held(now))
            .values(released_at=now, cool_until=now + timedelta(seconds=cooldown))
        )
        return bool(done.rowcount)


def proxy_key_of(engine: Engine, lease_id: str) -> str | None:
    """The key of the proxy lease ``lease_id`` is (or was) on; None once it is gone."""
    with engine.begin() as conn:
        return conn.scalar(select(P.key).join(L, L.proxy_id == P.id).where(L.id == lease_id))


def held_leases(engine: Engine, *, now: datetime | None = None, limit: int | None = None) -> list[HeldLease]:
    """Leases held at ``now`` (default: the lease clock, rule 5), oldest first (for ``status``)."""
    with engine.begin() as conn:
        now = now or _now(conn, None)
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


def lease_summary(engine: Engine, *, now: datetime | None = None, limit: int = 200) -> LeaseSummary:
    n_held, cooling = lease_counts(engine, now=now)
    return LeaseSummary(n_held, cooling, tuple(held_leases(engine, now=now, limit=limit)) if n_held else ())


def lease_counts(engine: Engine, *, now: datetime | ColumnElement[Any] | None = None) -> tuple[int, int]:
    """(leases held, proxies cooling down after a lease) at ``now`` (default: the lease clock;
    ``LeaseLimits.now``, a SQL clock expression on PostgreSQL, is taken as it is)."""
    with engine.begin() as conn:
        if now is None:
            now = _now(conn, None)
        n_held = conn.scalar(select(func.count()).select_from(L).where(held(now)))
        n_cooling = conn.scalar(select(func.count(func.distinct(L.proxy_id))).where(cooling(now)))
    return int(n_held or 0), int(n_cooling or 0)


__all__ = ["HeldLease", "Lease", "LeaseSummary", "Released", "acquire", "cooling", "free", "held", "held_leases", "lease_counts", "lease_summary", "proxy_key_of", "release"]
