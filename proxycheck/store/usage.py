"""Strategies that hold across worker processes: pick and count a hand-out in one statement.

Rules:
1. ``least_used`` hands out the eligible proxy with the fewest hand-outs so far
   (``proxies.use_count``); ``round_robin`` the one handed out least recently
   (``proxies.last_used_at``, never-used first). Ties go to the lowest id.
2. Pick and count are one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING``, in one short
   transaction, so two processes never both take "the least used" one: on SQLite the writer's
   ``BEGIN IMMEDIATE`` serialises them; on PostgreSQL the subquery locks its row
   ``FOR UPDATE SKIP LOCKED``, so a concurrent picker takes the next proxy instead of waiting.
3. The ordering walks ``ix_proxies_least_used`` / ``ix_proxies_round_robin`` and stops at the
   first eligible row, so a pick costs about the same with 100 proxies or 100,000 (on SQLite
   this needs ``Eligibility.clause(walk_index=True)``: selection.py rule 3).
4. Only ``use_count`` and ``last_used_at`` are written: never the health columns or the lease,
   so the daemon's fenced write-back is unaffected.
5. A selective filter (a rare tag) makes the index walk long: every row ahead in the order is
   read and rejected. The caller may pass ``among``, the ids its snapshot says match (at most a
   few hundred); the pick is then restricted to them and still re-checks eligibility itself.
6. On SQLite every pick holds the database's one write lock, which the daemon needs too. So
   ``CountedPicks`` runs the statement precompiled on a raw cursor: ``BEGIN IMMEDIATE`` to
   ``COMMIT`` takes ~0.1 ms instead of ~1 ms through the Core execution layer. Driver errors
   fall back to ``take`` (errors translated by engine.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, update

from ..proxy import Proxy
from ._rows import is_postgresql, utcnow
from .models import ProxyRow as P
from .models import UTCDateTime
from .eligibility import Eligibility, Filters
from .selection import WORKER_COLUMNS, raw_worker_proxy, worker_proxy

COUNTED_STRATEGIES = ("least_used", "round_robin")


def take(
    writer: Engine,
    strategy: str,
    eligibility: Eligibility,
    *,
    among: tuple[int, ...] | None = None,
    now: datetime | None = None,
) -> Proxy | None:
    """Pick the next proxy by ``strategy`` (``least_used`` or ``round_robin``) and count the
    hand-out; None when no proxy is eligible. ``now`` overrides the clock (tests); by default
    PostgreSQL stamps ``last_used_at`` with its own clock, SQLite with the local one."""
    if strategy not in COUNTED_STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not counted in the database ({COUNTED_STRATEGIES})")
    with writer.begin() as conn:
        pg = is_postgresql(conn)
        stamp: Any = func.clock_timestamp() if pg and now is None else (now or utcnow())
        for stmt in _statements(conn, strategy, eligibility, stamp, among):
            row = conn.execute(stmt).first()
            if row is not None:
                return worker_proxy(row)
    return None


def _statements(
    conn: Any, strategy: str, eligibility: Eligibility, stamp: Any, among: tuple[int, ...] | None = None,
    cutoff: Any = None,
) -> list[Any]:
    base = select(P.id).where(eligibility.clause(conn, walk_index=True, cutoff=cutoff))
    if among is not None:
        base = base.where(P.id.in_(among))
    if strategy == "least_used":
        attempts = [base.order_by(P.state, P.use_count, P.id)]
    else:  # never-used first; then least recently used (two index walks: NULLs sort differently)
        attempts = [
            base.where(P.last_used_at.is_(None)).order_by(P.state, P.last_used_at, P.id),
            base.where(P.last_used_at.is_not(None)).order_by(P.state, P.last_used_at, P.id),
        ]
    statements = []
    for pick in attempts:
        pick = pick.limit(1)
        if is_postgresql(conn):
            pick = pick.with_for_update(skip_locked=True)
        statements.append(
            update(P)
            .where(P.id == pick.scalar_subquery())
            .values(use_count=P.use_count + 1, last_used_at=stamp)
            .returning(*WORKER_COLUMNS)
        )
    return statements


class CountedPicks:
    """``take`` for one writer engine; on SQLite precompiled on a raw cursor (rule 6)."""

    MAX_CACHED = 256

    def __init__(self, writer: Engine) -> None:
        self.writer = writer
        self.sqlite = writer.dialect.name == "sqlite"
        self._to_db = UTCDateTime().dialect_impl(writer.dialect).bind_processor(writer.dialect) or (lambda v: v)
        self._compiled: dict[tuple[str, Filters | None, tuple[int, ...] | None], list[tuple[str, tuple[str, ...], dict[str, Any]]]] = {}

    def take(self, strategy: str, eligibility: Eligibility, among: tuple[int, ...] | None = None) -> Proxy | None:
        if strategy not in COUNTED_STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not counted in the database ({COUNTED_STRATEGIES})")
        if not self.sqlite or eligibility.leases is not None:
            return take(self.writer, strategy, eligibility, among=among)
        statements = self._statements(strategy, eligibility.filters, among, eligibility.allow_ip_locked)
        values = {"cutoff": self._to_db(eligibility.fresh_since), "stamp": self._to_db(utcnow())}
        raw = self.writer.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                row = None
                for sql, names, static in statements:
                    cursor.execute(sql, tuple(values[n] if n in values else static[n] for n in names))
                    row = cursor.fetchone()
                    if row is not None:
                        break
                cursor.execute("COMMIT")
            finally:
                cursor.close()
        except self.writer.dialect.loaded_dbapi.Error:
            raw.invalidate()  # closes the connection: an open transaction is rolled back
            return take(self.writer, strategy, eligibility, among=among)
        finally:
            raw.close()
        if row is None:
            return None
        return raw_worker_proxy(row)

    def _statements(
        self, strategy: str, filters: Filters, among: tuple[int, ...] | None, allow_ip_locked: bool = False
    ) -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
        key = (strategy, filters, among, allow_ip_locked)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= self.MAX_CACHED:
                self._compiled = {}
            placeholder = utcnow()
            cutoff = bindparam("cutoff", value=placeholder, type_=UTCDateTime())
            stamp = bindparam("stamp", value=placeholder, type_=UTCDateTime())
            found = []
            rule = Eligibility(placeholder, filters, allow_ip_locked=allow_ip_locked)
            for stmt in _statements(self.writer, strategy, rule, stamp, among, cutoff=cutoff):
                compiled = stmt.compile(dialect=self.writer.dialect, compile_kwargs={"render_postcompile": True})
                found.append((str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params)))
            self._compiled[key] = found
        return found


__all__ = ["COUNTED_STRATEGIES", "CountedPicks", "take"]
