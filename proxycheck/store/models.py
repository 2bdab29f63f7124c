"""The tables. Alembic's ``migrations/`` must produce exactly these (a test proves it).

Rules:
1. Portable types only, one tree for SQLite and PostgreSQL: ``UTCDateTime`` for every instant,
   ``JSON`` (JSONB on PostgreSQL) for lists, ``BigInteger`` ids that stay rowid aliases on SQLite.
2. Every constraint and index has a name (``NAMING_CONVENTION``), so batch migrations on SQLite
   can drop and recreate them.
3. ``proxies`` holds the current state of each proxy plus its lease; ``checks`` is the history;
   ``instances`` is one row per daemon process (heartbeats, the checker's own health);
   ``reports`` is what workers said about proxies (``proxycheck.report``), applied or not.
4. Changing anything here means a new revision in ``migrations/versions/``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text (its DATETIME has no zone),
    which compares correctly as text because SQLAlchemy always writes the same fixed-width form.
    Naive datetimes are refused: they are a bug (whose clock? which zone?).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: proxycheck stores aware UTC datetimes only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# JSONB on PostgreSQL (containment queries for tags); JSON text elsewhere.
JSONList = JSON().with_variant(JSONB(), "postgresql")
# BIGINT on PostgreSQL; INTEGER on SQLite so the id stays the auto-incrementing rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONList, list[Any]: JSONList}


# A proxy some ban target bans (most are banned by none): the predicate of ``ix_proxies_banned``,
# which a query must repeat word for word for the planner to use that index.
HAS_BANS = text("banned_on <> '[]'")


class ProxyRow(Base):
    """One proxy: its identity and credentials, its current health, and who is checking it."""

    __tablename__ = "proxies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)  # Proxy.key: URL without password
    subnet: Mapped[str | None] = mapped_column(String(64))  # host's /24 or /48 (guard.subnet_of); None: a name
    held_back: Mapped[str | None] = mapped_column(Text)  # why its subnet is held back (store/guard.py rule 4)
    scheme: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(255))
    # Handed to workers by get_healthy_proxy(); never logged (engines use hide_parameters).
    password: Mapped[str | None] = mapped_column(String(255))
    tags: Mapped[list[Any]] = mapped_column(server_default=text("'[]'"))
    label: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(1024))  # "csv:/etc/proxycheck/proxies.csv", "cli"
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    # Current health (health.HealthState) and what the latest check learnt.
    state: Mapped[str] = mapped_column(String(16), server_default="unknown")
    consecutive_successes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failing_streak: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    probe: Mapped[str | None] = mapped_column(String(64))
    state_changed_at: Mapped[datetime | None]
    last_checked_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime]
    latency_ms: Mapped[float | None] = mapped_column(Float)
    exit_ip: Mapped[str | None] = mapped_column(String(64))
    anonymity: Mapped[str | None] = mapped_column(String(16))
    resolved_ip: Mapped[str | None] = mapped_column(String(64))

    # The lease: which instance is checking it, fenced by a token (see queries.claim_due).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]

    # Hand-outs by the least_used and round_robin strategies, counted across every worker
    # process (store/usage.py). The random and fastest strategies do not write.
    use_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_used_at: Mapped[datetime | None]

    # Ban targets (store/exits.py writes them with each check; selection.py reads them): the
    # targets banning the exit and those it may serve, per the latest check that reached the
    # ban probe, and when the proxy last passed every probe but bans.
    banned_on: Mapped[list[Any]] = mapped_column(server_default=text("'[]'"))
    usable_for: Mapped[list[Any]] = mapped_column(server_default=text("'[]'"))
    usable_at: Mapped[datetime | None]
    # The exit IP over time (store/exits.py): the IPs in the kept readings (the latest last), how long the latest
    # IP has held (first to last reading of its run), and the shortest gap between two readings
    # that saw different IPs (None: no change seen).
    exit_ips: Mapped[list[Any]] = mapped_column(server_default=text("'[]'"))
    exit_run_seconds: Mapped[float | None] = mapped_column(Float)
    exit_change_gap: Mapped[float | None] = mapped_column(Float)
    # Where the latest exit IP is ([geo], geo.py; written by each check that learnt the exit IP):
    # ISO country, autonomous system, and why the proxy's country:XX tag is wrong (None: it is
    # not, or nobody knows). eligibility.py reads them for country=, asn= and country tags.
    exit_country: Mapped[str | None] = mapped_column(String(2))
    exit_asn: Mapped[int | None] = mapped_column(BigInteger)
    exit_as_org: Mapped[str | None] = mapped_column(String(255))
    geo_mismatch: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_proxies_due", "enabled", "next_check_at"),
        Index("ix_proxies_healthy", "state", "last_success_at"),
        Index("ix_proxies_source", "source"),
        Index("ix_proxies_subnet", "subnet"),
        Index("ix_proxies_least_used", "state", "use_count", "id"),
        Index("ix_proxies_round_robin", "state", "last_used_at", "id"),
        # The fleet summary (store/status.py rule 3) reads counts by state, the failure codes and
        # the latest check from this index alone, and the per-target bans from the few banned rows.
        Index("ix_proxies_summary", "enabled", "state", "code", "last_checked_at"),
        Index("ix_proxies_banned", "enabled", sqlite_where=HAS_BANS, postgresql_where=HAS_BANS),
    )


class CheckRow(Base):
    """History: one row per completed check (``checker_unavailable`` results are not stored)."""

    __tablename__ = "checks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    proxy_id: Mapped[int] = mapped_column(BigId, ForeignKey("proxies.id", ondelete="CASCADE"))
    checked_at: Mapped[datetime]
    healthy: Mapped[bool | None] = mapped_column(Boolean)
    code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(64))
    probe: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    elapsed_ms: Mapped[float | None] = mapped_column(Float)
    exit_ip: Mapped[str | None] = mapped_column(String(64))
    exit_country: Mapped[str | None] = mapped_column(String(2))  # where exit_ip is ([geo])
    exit_asn: Mapped[int | None] = mapped_column(BigInteger)
    exit_as_org: Mapped[str | None] = mapped_column(String(255))
    anonymity: Mapped[str | None] = mapped_column(String(16))
    probes: Mapped[list[Any]]  # [ProbeOutcome.as_dict(), ...]
    instance_id: Mapped[str | None] = mapped_column(String(64))
    # The vantage point it ran from (vantage.py rule 1; NULL: a row from before 0007), the address
    # it left from as far as the checker knew it, and what [check].vantages saw (vantage.Sight dicts).
    vantage: Mapped[str | None] = mapped_column(String(64))
    vantage_ip: Mapped[str | None] = mapped_column(String(255))
    sights: Mapped[list[Any] | None]

    __table_args__ = (
        Index("ix_checks_proxy_id_checked_at", "proxy_id", "checked_at"),
        Index("ix_checks_proxy_id_vantage_checked_at", "proxy_id", "vantage", "checked_at"),
    )


class ExitHistoryRow(Base):
    """The exit IPs a proxy's checks saw, with their times: the short history sticky exits are
    judged from (store/exits.py rule 2). ``readings`` is ``[[seen_at, ip], ...]``, oldest first,
    ``seen_at`` in ISO 8601 UTC; one row per proxy, rewritten by each check that read an exit IP."""

    __tablename__ = "exit_histories"

    proxy_id: Mapped[int] = mapped_column(BigId, ForeignKey("proxies.id", ondelete="CASCADE"), primary_key=True)
    readings: Mapped[list[Any]]


class InstanceRow(Base):
    """One running (or stopped) daemon process."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # uuid4 hex
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    checker_state: Mapped[str] = mapped_column(String(16), server_default="ok")  # ok | degraded
    checker_reason: Mapped[str | None] = mapped_column(Text)
    last_round_at: Mapped[datetime | None]
    own_ips: Mapped[list[Any]] = mapped_column(server_default=text("'[]'"))
    # [daemon].heartbeat_interval it runs with (instances.py rule 1); NULL: a row from before 0005.
    heartbeat_interval: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_instances_heartbeat_at", "heartbeat_at"),)


class ReportRow(Base):
    """One worker report about a proxy (``proxycheck.report``): what the captcha service said and
    whether it changed the proxy's health. Kept for ``status`` and the guard rail's window."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    proxy_id: Mapped[int] = mapped_column(BigId, ForeignKey("proxies.id", ondelete="CASCADE"))
    reported_at: Mapped[datetime]
    worker: Mapped[str | None] = mapped_column(String(255))  # who reported (host:pid by default)
    service_code: Mapped[str | None] = mapped_column(String(64))  # as the service gave it: "28", "ERROR_BAD_PROXY"
    error: Mapped[str | None] = mapped_column(String(64))  # normalised name: "ERROR_PROXY_BANNED"
    code: Mapped[int | None] = mapped_column(Integer)  # the anti-captcha code it maps to, if any
    kind: Mapped[str] = mapped_column(String(16))  # proxy_error | soft_failure | success
    applied: Mapped[bool] = mapped_column(Boolean)
    took_out: Mapped[bool] = mapped_column(Boolean)  # made a healthy proxy unhealthy (guard rail)
    why_not: Mapped[str | None] = mapped_column(String(32))  # guard_rail | not_healthy | disabled
    service: Mapped[str | None] = mapped_column(String(64))  # the captcha service (guard.py), if the worker named it

    __table_args__ = (
        Index("ix_reports_reported_at", "reported_at"),
        Index("ix_reports_proxy_id_reported_at", "proxy_id", "reported_at"),
        Index("ix_reports_service_reported_at", "service", "reported_at"),
    )


class WorkerLeaseRow(Base):
    """One check-out of a proxy by a worker (``proxycheck.lease()``; store/worker_leases.py).
    Held while ``released_at`` is NULL and ``expires_at`` is ahead; the proxy then cools down
    until ``cool_until``. Not the daemon's check lease (``proxies.lease_*``)."""

    __tablename__ = "worker_leases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # uuid4 hex: the lease's handle
    proxy_id: Mapped[int] = mapped_column(BigId, ForeignKey("proxies.id", ondelete="CASCADE"))
    worker: Mapped[str | None] = mapped_column(String(255))  # who holds it (host:pid by default)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    cool_until: Mapped[datetime]

    __table_args__ = (
        Index("ix_worker_leases_proxy_id_cool_until", "proxy_id", "cool_until"),
        Index("ix_worker_leases_cool_until", "cool_until"),
    )


class ProbeResultRow(Base):
    """The latest outcome of one probe on one proxy, with its time: a probe that is not due
    carries it forward while it is fresh (probes/schedule.py)."""

    __tablename__ = "probe_results"

    proxy_id: Mapped[int] = mapped_column(BigId, ForeignKey("proxies.id", ondelete="CASCADE"), primary_key=True)
    probe: Mapped[str] = mapped_column(String(64), primary_key=True)
    ran_at: Mapped[datetime]
    passed: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[dict[str, Any]]  # ProbeOutcome.as_dict()


__all__ = [
    "Base",
    "CheckRow",
    "ExitHistoryRow",
    "InstanceRow",
    "ProbeResultRow",
    "NAMING_CONVENTION",
    "ProxyRow",
    "ReportRow",
    "UTCDateTime",
    "WorkerLeaseRow",
    "metadata",
]
