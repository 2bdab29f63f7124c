"""One proxy's history: its recent checks and the worker reports about it (``proxycheck history``).

Read-only, two short transactions (checks, then reports): safe on a reader engine while the
daemon writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from .models import CheckRow as C
from .models import ProxyRow as P
from .reports import ReportInfo, recent_reports


@dataclass(frozen=True)
class CheckInfo:
    checked_at: datetime
    healthy: bool | None  # None: not judged (internal error)
    code: int | None
    reason: str | None
    probe: str | None
    detail: str | None
    elapsed_ms: float | None
    exit_ip: str | None
    instance_id: str | None
    vantage: str | None  # the vantage it ran from (vantage.py; None before migration 0007)
    vantage_ip: str | None
    sights: list[dict[str, Any]]  # what each vantage saw in it (vantage.Sight.as_dict), its own first
    # The probes that ran, as the row keeps them (result.history_probes): name, ok, elapsed_ms,
    # per-phase timings (connect, proxy_handshake, tls, ttfb, transfer), wording of the failure.
    probes: list[dict[str, Any]] = field(default_factory=list)
    exit_country: str | None = None  # where exit_ip was, as [geo] said at that check
    exit_asn: int | None = None
    exit_as_org: str | None = None


@dataclass(frozen=True)
class ProxyHistory:
    proxy_key: str
    checks: list[CheckInfo]  # newest first
    reports: list[ReportInfo]  # newest first


def proxy_history(engine: Engine, proxy_key: str, *, limit: int = 20) -> ProxyHistory | None:
    """The newest ``limit`` checks and reports of the proxy with this ``Proxy.key``; None if unknown."""
    with engine.begin() as conn:
        proxy_id = conn.scalar(select(P.id).where(P.key == proxy_key))
        if proxy_id is None:
            return None
        rows: Any = conn.execute(
            select(C.checked_at, C.healthy, C.code, C.reason, C.probe, C.detail, C.elapsed_ms, C.exit_ip, C.instance_id,
                   C.vantage, C.vantage_ip, C.sights, C.probes, C.exit_country, C.exit_asn, C.exit_as_org)
            .where(C.proxy_id == proxy_id)
            .order_by(C.checked_at.desc(), C.id.desc())
            .limit(limit)
        )
        checks = [CheckInfo(*row[:11], sights=list(row[11] or ()), probes=list(row[12] or ()), exit_country=row[13],
                            exit_asn=row[14], exit_as_org=row[15]) for row in rows]
    return ProxyHistory(proxy_key, checks, recent_reports(engine, proxy_key=proxy_key, limit=limit))


__all__ = ["CheckInfo", "ProxyHistory", "proxy_history"]
