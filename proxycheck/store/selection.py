"""The read side of the worker API: the queries that hand proxies out.

Rules:
1. What may be handed out is eligibility.py's ``Eligibility``: every query here takes one and
   uses its SQL form (``clause``) or, for a row already read, its Python form (``admits``), so
   the snapshot, the per-hand-out check, the lists and the ``NoHealthyProxy`` counts agree.
2. ``HotReads`` holds the worker's two hot reads, compiled once per engine and run on a raw
   DBAPI cursor (the Core execution layer costs ~0.4 ms a call; the query itself ~20 µs):
   ``candidates`` is the per-process snapshot's bulk read (the rule without filters, narrow
   columns, values left as the driver returns them: no per-row conversion), ``fetch`` re-reads
   one proxy by id and judges it with ``Eligibility.admits`` (every filter, the target and
   sticky ones too). A worker re-reads every proxy it is about to hand out, so a proxy that
   turned unhealthy after the snapshot was taken is never handed out. On a driver error they
   fall back to the Core path (``fetch_eligible``), which translates errors (engine.py rule 3).
3. Walking a strategy's index (usage.py): without statistics (SQLite always; PostgreSQL before
   its first ANALYZE) the planner prefers a range scan of ``ix_proxies_healthy`` plus a sort of
   100,000 rows; ``clause(walk_index=True)`` writes the freshness test as an expression
   (``+last_success_at``, ``last_success_at + interval '0 seconds'``) that no index can serve.
4. Read-only: safe on a SQLite reader engine while the daemon writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, Text, bindparam, case, cast, func, select

from ..proxy import Proxy
from ._rows import PROXY_COLUMNS, utcnow
from .eligibility import ANONYMITY_LEVELS, FACT_COLUMNS, Eligibility, Facts, Filters
from .models import ProxyRow as P
from .models import UTCDateTime

WORKER_COLUMNS = (P.id, P.key, *PROXY_COLUMNS, P.exit_ip, P.latency_ms, P.resolved_ip)


# One eligible proxy as a snapshot keeps it: a plain tuple straight from the driver (rule 2),
# enough to filter and order, no secrets. ``tags`` is JSON text; ``last_success`` is in the
# driver's form (text on SQLite, datetime on PostgreSQL): compare it with ``HotReads.cutoff``.
Candidate = tuple[int, str, str, "str | None", str, "float | None", Any]
C_ID, C_KEY, C_SCHEME, C_ANONYMITY, C_TAGS, C_LATENCY, C_LAST_SUCCESS = range(7)


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


def raw_worker_proxy(row: tuple[Any, ...], tag_set: frozenset[str] | None = None) -> Proxy:
    """``worker_proxy`` for a raw DBAPI row of ``WORKER_COLUMNS`` (tags as JSON text or a list,
    or read already: ``tag_set``)."""
    _id, _key, scheme, host, port, username, password, tags, label, exit_ip, latency, resolved_ip = row[:12]
    if tag_set is None:
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
        unfiltered = Eligibility(utcnow()).clause(engine, cutoff=cutoff)
        tags_text = cast(P.tags, Text) if self._pg else P.tags
        self._candidates = self._compile(
            select(P.id, P.key, P.scheme, P.anonymity, tags_text, P.latency_ms, P.last_success_at).where(unfiltered)
        )
        self._fetch = self._compile(select(*WORKER_COLUMNS, *FACT_COLUMNS).where(P.id == bindparam("pid")))
        self._sets: dict[Any, frozenset[str]] = {}  # JSON list text -> set (fleets share a few)

    def _compile(self, stmt: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """SQL, the order of its positional parameters, and its constant ones ("healthy")."""
        compiled = stmt.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        constants = {k: v for k, v in compiled.params.items() if v is not None}
        return str(compiled), tuple(compiled.positiontup) if compiled.positional else None, constants

    def cutoff(self, fresh_since: datetime) -> Any:
        """``fresh_since`` in the driver's form, to compare with ``Candidate[C_LAST_SUCCESS]``."""
        return self._to_db(fresh_since)

    def _run(self, query: tuple[str, tuple[str, ...] | None, dict[str, Any]], values: dict[str, Any], one: bool) -> Any:
        sql, order, constants = query
        values = {**constants, **values}
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

    def candidates(self, eligibility: Eligibility) -> list[Candidate]:
        """Every proxy the rule without filters admits, for a worker process's snapshot."""
        values = {"cutoff": self.cutoff(eligibility.fresh_since)}
        try:
            return self._run(self._candidates, values, one=False)
        except self.engine.dialect.loaded_dbapi.Error:
            return _candidates_core(self.engine, eligibility)

    def fetch(self, proxy_id: int, eligibility: Eligibility) -> Proxy | None:
        """``fetch_eligible``, fast: one row by id, judged by ``Eligibility.admits``."""
        if eligibility.leases is not None:  # lease counts live in another table
            return fetch_eligible(self.engine, proxy_id, eligibility)
        try:
            row = self._run(self._fetch, {"pid": proxy_id}, one=True)
        except self.engine.dialect.loaded_dbapi.Error:
            return fetch_eligible(self.engine, proxy_id, eligibility)
        if row is None:
            return None
        facts = self.facts(row[len(WORKER_COLUMNS):])
        return raw_worker_proxy(row, facts.tags) if eligibility.admits(facts) else None

    def facts(self, raw: tuple[Any, ...]) -> Facts:
        """``FACT_COLUMNS`` as the driver returned them, as ``Facts``. psycopg returns Python
        values; SQLite returns times as UTCDateTime's fixed-width UTC text and JSON lists as
        text, read here with the C parsers (SQLAlchemy's regex-based processors would cost
        more than the query)."""
        key, enabled, state, reason, last_success, usable_at, usable_for, tags, *rest = raw
        if not self._pg:
            last_success = last_success and _sqlite_time(last_success)
            usable_at = usable_at and _sqlite_time(usable_at)
        return Facts(key, bool(enabled), state, reason, last_success, usable_at, self._set(usable_for), self._set(tags), *rest)

    def _set(self, value: Any) -> frozenset[str]:
        if not isinstance(value, str):  # psycopg: a list already
            return frozenset(value or ())
        found = self._sets.get(value)
        if found is None:
            if len(self._sets) >= 4096:
                self._sets = {}
            found = self._sets[value] = frozenset(json.loads(value))
        return found


def _sqlite_time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def facts_of(row: Any) -> Facts:
    """``Facts`` from a Core row holding ``FACT_COLUMNS``."""
    return Facts(row.key, bool(row.enabled), row.state, row.reason, row.last_success_at, row.usable_at,
                 frozenset(row.usable_for or ()), frozenset(row.tags or ()), row.scheme, row.anonymity,
                 row.exit_run_seconds, row.exit_change_gap, row.held_back, row.exit_country, row.exit_asn, row.geo_mismatch)


def _candidates_core(engine: Engine, eligibility: Eligibility) -> list[Candidate]:
    """``HotReads.candidates`` through Core (errors translated), values in the driver's form."""
    with engine.begin() as conn:
        tags_text = cast(P.tags, Text) if conn.dialect.name == "postgresql" else func.json(P.tags)
        stmt = select(P.id, P.key, P.scheme, P.anonymity, tags_text, P.latency_ms, P.last_success_at).where(
            Eligibility(eligibility.fresh_since).clause(conn)
        )
        to_db = UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect) or (lambda v: v)
        return [(*row[:6], to_db(row[6])) for row in conn.execute(stmt)]


def fetch_eligible(engine: Engine, proxy_id: int, eligibility: Eligibility) -> Proxy | None:
    """The proxy ``proxy_id`` if it is eligible right now, else None."""
    with engine.begin() as conn:
        row = conn.execute(
            select(*WORKER_COLUMNS).where(P.id == proxy_id, eligibility.clause(conn))
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
    eligibility: Eligibility,
    *,
    order: str = "fastest",
    limit: int | None = None,
) -> list[Proxy]:
    """Every eligible proxy, in ``order`` (a key of ``ORDERS``)."""
    with engine.begin() as conn:
        stmt = select(*WORKER_COLUMNS).where(eligibility.clause(conn)).order_by(*ORDERS[order])
        if limit is not None:
            stmt = stmt.limit(limit)
        return [worker_proxy(row) for row in conn.execute(stmt)]


def eligible_ids(engine: Engine, eligibility: Eligibility) -> list[int]:
    """Ids only: the no-snapshot path of the random strategy."""
    with engine.begin() as conn:
        return list(conn.scalars(select(P.id).where(eligibility.clause(conn))))


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
    matching: int = 0  # eligible under the whole rule asked about, filters included
    held_back: int = 0  # healthy but held back with their subnet (store/guard.py rule 4)


def shortage(engine: Engine, rule: Eligibility) -> Shortage:
    """Counts by state and freshness, and how many ``rule`` admits, for the ``NoHealthyProxy``
    message: one statement. ``fresh``: the rule without filters (for an enabled healthy proxy,
    that is its freshness)."""
    with engine.begin() as conn:
        fresh_col = Eligibility(rule.fresh_since).clause(conn).label("fresh")
        admitted = func.sum(case((rule.clause(conn), 1), else_=0))
        counts: dict[tuple[bool, str, bool], int] = {}
        by_code: dict[int | None, int] = {}  # enabled unhealthy proxies by failure code
        matching = held_back = 0
        held_col = P.held_back.is_not(None).label("held")
        groups = (P.enabled, P.state, fresh_col, P.code, held_col)
        for enabled, state, fresh, code, held, n, m in conn.execute(select(*groups, func.count(), admitted).group_by(*groups)):
            matching += int(m or 0)
            if enabled and held and state == "healthy":  # not stale: held back (fresh_col says no to both)
                held_back += n
                continue
            counts[(bool(enabled), state, bool(fresh))] = counts.get((bool(enabled), state, bool(fresh)), 0) + n
            if enabled and state == "unhealthy":
                by_code[code] = by_code.get(code, 0) + n
    codes = sorted(by_code.items(), key=lambda item: (-item[1], item[0] is None, item[0] or 0))

    def total(enabled: bool | None = None, state: str | None = None, fresh: bool | None = None) -> int:
        return sum(
            n
            for (e, s, f), n in counts.items()
            if (enabled is None or e == enabled) and (state is None or s == state) and (fresh is None or f == fresh)
        )

    return Shortage(
        enabled=total(enabled=True) + held_back,
        disabled=total(enabled=False),
        fresh=total(True, "healthy", True),
        stale=total(True, "healthy", False),
        unhealthy=total(True, "unhealthy"),
        unknown=total(True, "unknown"),
        codes=tuple(codes),
        matching=matching,
        held_back=held_back,
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
    "Eligibility",
    "Filters",
    "ORDERS",
    "Shortage",
    "eligible_ids",
    "facts_of",
    "fetch_eligible",
    "HotReads",
    "select_eligible",
    "shortage",
    "raw_worker_proxy",
    "worker_proxy",
]
