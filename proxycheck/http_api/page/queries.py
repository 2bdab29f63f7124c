"""The status page's reads: the fleet over time, one page of the proxy table, one proxy.

Rules:
1. History is aggregated in SQL (``GROUP BY`` time bucket), never in Python: Python only lays the
   rows out as chart columns. (A proxy's exit IPs come from its at most ``store.exits.KEEP``
   kept readings, one JSON row, counted by ``store.exits.by_ip``.) A bucket counts the distinct proxies whose checks in it were
   healthy / unhealthy / not judged (a proxy that flapped inside one bucket counts in both).
2. The table is paginated in SQL (``LIMIT``/``OFFSET``), sorted only by a known column (empty
   values last either way, then id),
   filtered by state, code, tag, scheme, ban target and anonymity. Rows carry ``Proxy.key``
   (the URL without its password), never the password column.
3. Read-only, short transactions: safe on the daemon's reader engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, text, true

from ...store import exits as exit_store
from ...store._rows import has_tag, list_has, utcnow
from ...store.models import ProxyRow as P
from ...store.models import UTCDateTime
from ...store.models import WorkerLeaseRow as L

WINDOWS = {"24h": (24 * 3600, 900), "7d": (7 * 24 * 3600, 7200)}  # name: (seconds, bucket seconds)
PAGE_SIZE = 50
SORTS = {"proxy": P.key, "state": P.state, "code": P.code, "latency": P.latency_ms, "checked": P.last_checked_at,
         "exit": P.exit_ip, "scheme": P.scheme}
FILTERS = ("state", "code", "tag", "scheme", "target", "anonymity")

_VERDICT = "CASE WHEN healthy IS NULL THEN 'unknown' WHEN healthy THEN 'healthy' ELSE 'unhealthy' END"


def _bucket(dialect: str) -> str:
    if dialect == "postgresql":
        return "CAST(FLOOR(EXTRACT(EPOCH FROM checked_at) / :step) * :step AS BIGINT)"
    return "CAST(strftime('%s', checked_at) AS INTEGER) / :step * :step"


def over_time(engine: Engine, window: str, *, now: datetime | None = None, top_codes: int = 6) -> dict[str, Any]:
    """``{"t": [bucket starts, epoch s], "states": {healthy: [...], ...}, "codes": {"25": [...], ...}}``."""
    seconds, step = WINDOWS[window]
    now = now or utcnow()
    since = now - timedelta(seconds=seconds)
    with engine.begin() as conn:
        bucket = _bucket(conn.dialect.name)
        params = [bindparam("since", type_=UTCDateTime()), bindparam("step")]
        states = conn.execute(text(
            f"SELECT {bucket} AS b, {_VERDICT} AS v, COUNT(DISTINCT proxy_id) FROM checks "
            "WHERE checked_at >= :since GROUP BY b, v").bindparams(*params), {"since": since, "step": step}).all()
        codes = conn.execute(text(
            f"SELECT {bucket} AS b, code, COUNT(DISTINCT proxy_id) FROM checks "
            "WHERE checked_at >= :since AND healthy = :no AND code IS NOT NULL GROUP BY b, code").bindparams(*params),
            {"since": since, "step": step, "no": False}).all()
    start = int(since.timestamp()) // step * step
    times = list(range(start, int(now.timestamp()) + 1, step))
    index = {t: i for i, t in enumerate(times)}
    shaped: dict[str, Any] = {"t": times, "step": step, "states": {s: [0] * len(times) for s in ("healthy", "unhealthy", "unknown")},
                              "codes": {}}
    for b, verdict, n in states:
        if int(b) in index:
            shaped["states"][verdict][index[int(b)]] = int(n)
    peak: dict[int, int] = {}
    for _, code, n in codes:
        peak[int(code)] = max(peak.get(int(code), 0), int(n))
    kept = sorted(peak, key=lambda c: (-peak[c], c))[:top_codes]
    shaped["codes"] = {str(c): [0] * len(times) for c in sorted(kept)}
    for b, code, n in codes:
        if str(code) in shaped["codes"] and int(b) in index:
            shaped["codes"][str(code)][index[int(b)]] = int(n)
    return shaped


@dataclass(frozen=True)
class TablePage:
    rows: list[Any]
    total: int  # matching the filters
    page: int
    pages: int


def proxy_table(engine: Engine, filters: dict[str, str], sort: str = "proxy", descending: bool = False,
                page: int = 1) -> TablePage:
    """One page of the proxies matching ``filters`` (keys from ``FILTERS``; "" means any)."""
    with engine.begin() as conn:
        where = []
        state = filters.get("state")
        if state == "disabled":
            where.append(P.enabled.is_(False))
        elif state:
            where += [P.enabled == true(), P.state == state]
        if filters.get("code"):
            where.append(P.code == int(filters["code"]))
        if filters.get("tag"):
            where.append(has_tag(conn, filters["tag"]))
        if filters.get("scheme"):
            where.append(P.scheme == filters["scheme"])
        if filters.get("target"):
            where.append(list_has(conn, P.banned_on, filters["target"]))
        if filters.get("anonymity"):
            where.append(P.anonymity == filters["anonymity"])
        total = int(conn.scalar(select(func.count()).select_from(P).where(*where)) or 0)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(max(1, page), pages)
        column = SORTS.get(sort, P.key)
        order = [column.is_(None), column.desc() if descending else column.asc(), P.id]  # unknowns last, both ways
        rows = conn.execute(
            select(P.id, P.key, P.scheme, P.enabled, P.state, P.code, P.reason, P.probe, P.tags, P.label,
                   P.latency_ms, P.last_checked_at, P.exit_ip, P.anonymity, P.banned_on, P.lease_owner, P.exit_country,
                   P.exit_asn, P.geo_mismatch)
            .where(*where).order_by(*order).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
        ).all()
    return TablePage(list(rows), total, page, pages)


def proxy_row(engine: Engine, proxy_id: int) -> Any | None:
    """The proxy's current row (no password), its exit IPs (latest first) and its workers'
    check-out leases still on record (held, or ended and cooling; newest first)."""
    with engine.begin() as conn:
        row = conn.execute(
            select(P.id, P.key, P.scheme, P.enabled, P.state, P.code, P.reason, P.probe, P.detail, P.tags, P.label,
                   P.source, P.latency_ms, P.last_checked_at, P.last_success_at, P.next_check_at, P.exit_ip,
                   P.anonymity, P.resolved_ip, P.banned_on, P.usable_for, P.usable_at, P.exit_ips,
                   P.lease_owner, P.lease_expires_at, P.state_changed_at, P.exit_country, P.exit_asn, P.exit_as_org,
                   P.geo_mismatch)
            .where(P.id == proxy_id)
        ).first()
        if row is None:
            return None
        exits = exit_store.by_ip(exit_store.readings(conn, [proxy_id]).get(proxy_id, []))
        leases = conn.execute(
            select(L.worker, L.acquired_at, L.expires_at, L.released_at, L.cool_until)
            .where(L.proxy_id == proxy_id).order_by(L.acquired_at.desc()).limit(20)
        ).all()
    return row, exits, leases


__all__ = ["FILTERS", "PAGE_SIZE", "SORTS", "TablePage", "WINDOWS", "over_time", "proxy_row", "proxy_table"]
