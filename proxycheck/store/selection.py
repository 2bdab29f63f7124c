"""The read side of the worker API: which proxies may be handed out, as queries.

Rules:
1. *Eligible* = enabled, ``state = 'healthy'`` and ``last_success_at >= fresh_since``, and
   matching every filter (``Filters``). With a ban ``target``: enabled, healthy or unhealthy
   only for bans, passed everything but bans since ``fresh_since`` (``usable_at``) and usable
   for that target (store/exits.py rule 1). ``sticky``: also an exit IP seen stable. Every function here applies that one definition
   (``eligible``), so the snapshot, the per-hand-out check and the list agree.
2. ``HotReads`` holds the worker's two hot reads, compiled once per engine and run on a raw
   DBAPI cursor (the Core execution layer costs ~0.4 ms a call; the query itself ~20 µs):
   ``candidates`` is the per-process snapshot's bulk read (narrow columns, values left as the
   driver returns them: no per-row conversion), ``fetch`` re-reads one proxy by id under the
   full definition. A worker re-reads every proxy it is about to hand out, so a proxy that
   turned unhealthy after the snapshot was taken is never handed out. On a driver error they
   fall back to the Core path (``fetch_eligible``), which translates errors (engine.py rule 3).
3. Walking a strategy's index (usage.py): without statistics (SQLite always; PostgreSQL before
   its first ANALYZE) the planner prefers a range scan of ``ix_proxies_healthy`` plus a sort of
   100,000 rows; ``eligible(..., walk_index=True)`` writes the freshness test as an expression
   (``+last_success_at``, ``last_success_at + interval '0 seconds'``) that no index can serve.
4. Read-only: safe on a SQLite reader engine while the daemon writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Text, and_, bindparam, cast, func, literal_column, or_, select, true

from ..proxy import Proxy
from ._rows import PROXY_COLUMNS, has_tag, list_has
from .exits import sticky_clauses
from .models import ProxyRow as P
from .models import UTCDateTime

# Weakest first. A healthy proxy is never transparent (that is error 29), so "anonymous" and
# "elite" are the useful minimums.
ANONYMITY_LEVELS = ("transparent", "anonymous", "elite")

WORKER_COLUMNS = (P.id, P.key, *PROXY_COLUMNS, P.exit_ip, P.latency_ms, P.resolved_ip)


@dataclass(frozen=True)
class Filters:
    """What a worker asked for. ``exclude`` holds ``Proxy.key`` values (already tried)."""

    tags: frozenset[str] = frozenset()
    schemes: frozenset[str] | None = None  # None: any scheme
    min_anonymity: str | None = None  # one of ANONYMITY_LEVELS; None: any
    exclude: frozenset[str] = frozenset()
    # A ban target's name: proxies usable for it, even if other targets ban them (exits.py rule 1).
    target: str | None = None
    # Only proxies whose exit IP was seen stable for ``sticky_seconds`` (exits.py rule 3).
    sticky: bool = False
    sticky_seconds: float = 120.0

    @property
    def needs_full_row(self) -> bool:
        """Filters the snapshot's narrow candidates cannot judge: ask the database (rule 2)."""
        return self.target is not None or self.sticky

    def __post_init__(self) -> None:
        if self.min_anonymity is not None and self.min_anonymity not in ANONYMITY_LEVELS:
            raise ValueError(
                f"anonymity: {self.min_anonymity!r} is not a level (known, weakest first: "
                f"{', '.join(ANONYMITY_LEVELS)})"
            )

    @property
    def anonymity_levels(self) -> tuple[str, ...] | None:
        if self.min_anonymity is None:
            return None
        return ANONYMITY_LEVELS[ANONYMITY_LEVELS.index(self.min_anonymity) :]

    def describe(self) -> str:
        parts = []
        if self.tags:
            parts.append(f"tags {sorted(self.tags)}")
        if self.schemes:
            parts.append(f"scheme {' or '.join(sorted(self.schemes))}")
        if self.min_anonymity:
            parts.append(f"anonymity at least {self.min_anonymity}")
        if self.exclude:
            parts.append(f"{len(self.exclude)} excluded")
        if self.target is not None:
            parts.append(f"usable for ban target {self.target!r}")
        if self.sticky:
            parts.append(f"sticky exit (stable for {self.sticky_seconds:g} s)")
        return ", ".join(parts)


# One eligible proxy as a snapshot keeps it: a plain tuple straight from the driver (rule 2),
# enough to filter and order, no secrets. ``tags`` is JSON text; ``last_success`` is in the
# driver's form (text on SQLite, datetime on PostgreSQL): compare it with ``HotReads.cutoff``.
Candidate = tuple[int, str, str, "str | None", str, "float | None", Any]
C_ID, C_KEY, C_SCHEME, C_ANONYMITY, C_TAGS, C_LATENCY, C_LAST_SUCCESS = range(7)


def eligible(
    conn: Connection, fresh_since: datetime, filters: Filters | None = None, *, walk_index: bool = False
) -> ColumnElement[bool]:
    """The one definition of "may be handed out" (rule 1; ``walk_index``: rule 3)."""
    last_success: Any = P.last_success_at
    if walk_index:  # an expression, so no index serves the freshness test
        column = f"{P.__tablename__}.last_success_at"
        if conn.dialect.name == "sqlite":
            last_success = literal_column(f"+{column}", UTCDateTime())
        else:
            last_success = literal_column(f"({column} + interval '0 seconds')", UTCDateTime())
    clauses: list[ColumnElement[bool]] = [P.enabled == true()]
    if filters is not None and filters.target is not None:
        # Healthy but for bans on *other* targets: passed every other probe recently, and the
        # latest ban check found this target fine (exits.py rule 1). A proxy whose latest
        # failure is anything but a ban is out, as without a target.
        clauses += [
            or_(P.state == "healthy", P.reason == "banned"),
            P.usable_at >= fresh_since,
            list_has(conn, P.usable_for, filters.target),
        ]
    else:
        clauses += [P.state == "healthy", last_success >= fresh_since]
    if filters is not None and filters.sticky:
        clauses += sticky_clauses(conn, filters.sticky_seconds)
    if filters is not None:
        clauses += [has_tag(conn, tag) for tag in sorted(filters.tags)]
        if filters.schemes is not None:
            clauses.append(P.scheme.in_(sorted(filters.schemes)))
        levels = filters.anonymity_levels
        if levels is not None:
            clauses.append(P.anonymity.in_(levels))
        if filters.exclude:
            clauses.append(P.key.not_in(sorted(filters.exclude)))
    return and_(*clauses)


def worker_proxy(row: Any) -> Proxy:
    """A ``Proxy`` with its password and the latest check's facts, from ``WORKER_COLUMNS``."""
    return Proxy(
        row.scheme,
        row.host,
        row.port,
        row.username,
        row.password,
        frozenset(row.tags or ()),
        row.label,
        exit_ip=row.exit_ip,
        latency_ms=row.latency_ms,
        resolved_ip=row.resolved_ip,
    )


def raw_worker_proxy(row: tuple[Any, ...]) -> Proxy:
    """``worker_proxy`` for a raw DBAPI row of ``WORKER_COLUMNS`` (tags as JSON text or a list)."""
    _id, _key, scheme, host, port, username, password, tags, label, exit_ip, latency, resolved_ip = row[:12]
    tag_set = frozenset(json.loads(tags) if isinstance(tags, str) else tags or ())
    return Proxy(scheme, host, port, username, password, tag_set, label,
                 exit_ip=exit_ip, latency_ms=latency, resolved_ip=resolved_ip)


class HotReads:
    """``candidates`` and ``fetch`` on a raw DBAPI cursor, compiled once for ``engine`` (rule 2)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self._pg = dialect.name == "postgresql"
        self._to_db = UTCDateTime().dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
        cutoff = bindparam("cutoff", type_=UTCDateTime())
        healthy = and_(P.enabled == true(), P.state == bindparam("state"), P.last_success_at >= cutoff)
        tags_text = cast(P.tags, Text) if dialect.name == "postgresql" else P.tags
        self._candidates = self._compile(
            select(P.id, P.key, P.scheme, P.anonymity, tags_text, P.latency_ms, P.last_success_at).where(healthy)
        )
        self._fetch = self._compile(select(*WORKER_COLUMNS, P.anonymity).where(P.id == bindparam("pid"), healthy))

    def _compile(self, stmt: Any) -> tuple[str, tuple[str, ...] | None]:
        compiled = stmt.compile(dialect=self.engine.dialect)
        return str(compiled), tuple(compiled.positiontup) if compiled.positional else None

    def cutoff(self, fresh_since: datetime) -> Any:
        """``fresh_since`` in the driver's form, to compare with ``Candidate[C_LAST_SUCCESS]``."""
        return self._to_db(fresh_since)

    def _run(self, query: tuple[str, tuple[str, ...] | None], values: dict[str, Any], one: bool) -> Any:
        sql, order = query
        params: Any = tuple(values[name] for name in order) if order is not None else values
        raw = self.engine.raw_connection()
        try:
            if self._pg:  # one statement: no BEGIN/ROLLBACK round trips around it
                raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            cursor = raw.cursor()
            try:
                cursor.execute(sql, params)
                return cursor.fetchone() if one else cursor.fetchall()
            finally:
                cursor.close()
                if self._pg:
                    raw.driver_connection.autocommit = False  # type: ignore[union-attr]
        except self.engine.dialect.loaded_dbapi.Error:
            raw.invalidate()
            raise
        finally:
            raw.close()  # back to the pool

    def candidates(self, fresh_since: datetime) -> list[Candidate]:
        """Every eligible proxy (no filters), for a worker process's snapshot."""
        values = {"state": "healthy", "cutoff": self.cutoff(fresh_since)}
        try:
            return self._run(self._candidates, values, one=False)
        except self.engine.dialect.loaded_dbapi.Error:
            return _candidates_core(self.engine, fresh_since)

    def fetch(self, proxy_id: int, fresh_since: datetime, filters: Filters | None = None) -> Proxy | None:
        """``fetch_eligible``, fast: filters other than freshness are checked on the row."""
        if filters is not None and filters.needs_full_row:
            return fetch_eligible(self.engine, proxy_id, fresh_since, filters)
        values = {"pid": proxy_id, "state": "healthy", "cutoff": self.cutoff(fresh_since)}
        try:
            row = self._run(self._fetch, values, one=True)
        except self.engine.dialect.loaded_dbapi.Error:
            return fetch_eligible(self.engine, proxy_id, fresh_since, filters)
        if row is None:
            return None
        proxy, anonymity = raw_worker_proxy(row), row[-1]
        if filters is not None:
            if not filters.tags <= proxy.tags or proxy.key in filters.exclude:
                return None
            if filters.schemes is not None and proxy.scheme not in filters.schemes:
                return None
            levels = filters.anonymity_levels
            if levels is not None and anonymity not in levels:
                return None
        return proxy


def _candidates_core(engine: Engine, fresh_since: datetime) -> list[Candidate]:
    """``HotReads.candidates`` through Core (errors translated), values in the driver's form."""
    with engine.begin() as conn:
        tags_text = cast(P.tags, Text) if conn.dialect.name == "postgresql" else func.json(P.tags)
        stmt = select(P.id, P.key, P.scheme, P.anonymity, tags_text, P.latency_ms, P.last_success_at).where(
            eligible(conn, fresh_since)
        )
        to_db = UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect) or (lambda v: v)
        return [(*row[:6], to_db(row[6])) for row in conn.execute(stmt)]


def fetch_eligible(
    engine: Engine, proxy_id: int, fresh_since: datetime, filters: Filters | None = None
) -> Proxy | None:
    """The proxy ``proxy_id`` if it is eligible right now, else None (rule 3)."""
    with engine.begin() as conn:
        row = conn.execute(
            select(*WORKER_COLUMNS).where(P.id == proxy_id, eligible(conn, fresh_since, filters))
        ).first()
    return None if row is None else worker_proxy(row)


# Orders for lists; None latency last everywhere.
ORDERS = {
    "fastest": (P.latency_ms.is_(None), P.latency_ms, P.id),
    "least_used": (P.use_count, P.id),
    "round_robin": (P.last_used_at.is_not(None), P.last_used_at, P.id),
    "id": (P.id,),
}


def select_eligible(
    engine: Engine,
    fresh_since: datetime,
    filters: Filters | None = None,
    *,
    order: str = "fastest",
    limit: int | None = None,
) -> list[Proxy]:
    """Every eligible proxy matching ``filters``, in ``order`` (a key of ``ORDERS``)."""
    with engine.begin() as conn:
        stmt = select(*WORKER_COLUMNS).where(eligible(conn, fresh_since, filters)).order_by(*ORDERS[order])
        if limit is not None:
            stmt = stmt.limit(limit)
        return [worker_proxy(row) for row in conn.execute(stmt)]


def eligible_ids(engine: Engine, fresh_since: datetime, filters: Filters | None = None) -> list[int]:
    """Ids only: the no-snapshot path of the random strategy."""
    with engine.begin() as conn:
        return list(conn.scalars(select(P.id).where(eligible(conn, fresh_since, filters))))


@dataclass(frozen=True)
class Shortage:
    """Why nothing qualified: the counts ``NoHealthyProxy`` explains itself with."""

    enabled: int
    disabled: int
    fresh: int  # healthy and fresh, before filters
    stale: int  # healthy but last success older than max_age (or never)
    unhealthy: int
    unknown: int
    codes: tuple[tuple[int | None, int], ...]  # (code, proxies) of enabled unhealthy, most first


def shortage(engine: Engine, fresh_since: datetime) -> Shortage:
    """Counts by state and freshness, for the ``NoHealthyProxy`` message."""
    with engine.begin() as conn:
        fresh_col = (P.last_success_at >= fresh_since).label("fresh")
        counts: dict[tuple[bool, str, bool], int] = {}
        by = select(P.enabled, P.state, fresh_col, func.count()).group_by(P.enabled, P.state, fresh_col)
        for enabled, state, fresh, n in conn.execute(by):
            counts[(bool(enabled), state, bool(fresh))] = counts.get((bool(enabled), state, bool(fresh)), 0) + n
        codes = conn.execute(
            select(P.code, func.count().label("n"))
            .where(P.enabled == true(), P.state == "unhealthy")
            .group_by(P.code)
            .order_by(func.count().desc(), P.code)
        ).all()

    def total(enabled: bool | None = None, state: str | None = None, fresh: bool | None = None) -> int:
        return sum(
            n
            for (e, s, f), n in counts.items()
            if (enabled is None or e == enabled) and (state is None or s == state) and (fresh is None or f == fresh)
        )

    return Shortage(
        enabled=total(enabled=True),
        disabled=total(enabled=False),
        fresh=total(True, "healthy", True),
        stale=total(True, "healthy", False),
        unhealthy=total(True, "unhealthy"),
        unknown=total(True, "unknown"),
        codes=tuple((row.code, row.n) for row in codes),
    )


__all__ = [
    "ANONYMITY_LEVELS",
    "C_ANONYMITY",
    "C_ID",
    "C_KEY",
    "C_LAST_SUCCESS",
    "C_LATENCY",
    "C_SCHEME",
    "C_TAGS",
    "Candidate",
    "Filters",
    "ORDERS",
    "Shortage",
    "eligible",
    "eligible_ids",
    "fetch_eligible",
    "HotReads",
    "select_eligible",
    "shortage",
    "raw_worker_proxy",
    "worker_proxy",
]
