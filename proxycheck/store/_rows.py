"""Conversions between rows and proxycheck's values, shared by the query modules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from ..health import HealthState
from ..proxy import Proxy
from .models import ProxyRow as P

T = TypeVar("T")

# Keep IN lists well below SQLite's bound-parameter limit.
CHUNK = 500

PROXY_COLUMNS = (P.scheme, P.host, P.port, P.username, P.password, P.tags, P.label)
STATE_COLUMNS = (
    P.state,
    P.consecutive_successes,
    P.consecutive_failures,
    P.failing_streak,
    P.code,
    P.reason,
    P.state_changed_at,
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def proxy_from_row(row: Any) -> Proxy:
    return Proxy(
        row.scheme, row.host, row.port, row.username, row.password, frozenset(row.tags or ()), row.label
    )


def state_from_row(row: Any) -> HealthState:
    return HealthState(
        state=row.state,
        consecutive_successes=row.consecutive_successes,
        consecutive_failures=row.consecutive_failures,
        failing_streak=row.failing_streak,
        code=row.code,
        reason=row.reason,
        changed_at=row.state_changed_at,
    )


def state_values(state: HealthState) -> dict[str, Any]:
    return {
        "state": state.state,
        "consecutive_successes": state.consecutive_successes,
        "consecutive_failures": state.consecutive_failures,
        "failing_streak": state.failing_streak,
        "code": state.code,
        "reason": state.reason,
        "state_changed_at": state.changed_at,
    }


def tags_value(proxy: Proxy) -> list[str]:
    return sorted(proxy.tags)


def is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def has_tag(conn: Connection, tag: str) -> ColumnElement[bool]:
    """``proxies.tags`` contains ``tag`` (JSONB containment on PostgreSQL, json_each on SQLite)."""
    return list_has(conn, P.tags, tag)


def list_has(conn: Connection, column: Any, value: str) -> ColumnElement[bool]:
    """The JSON list ``column`` contains ``value`` (tags, ``usable_for``)."""
    if is_postgresql(conn):
        return column.op("@>", is_comparison=True)(literal([value], JSONB))
    each = func.json_each(column).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value == value))
