"""Daemon instances: who is running, is its checker able to work, when did it last finish a round.

Rules:
1. Each daemon process registers once, heartbeats while it runs (every
   ``[daemon].heartbeat_interval``, and at once when its checker changes state) and marks itself
   stopped on a clean exit. An instance is *live* if it has not stopped and its heartbeat is
   recent; a crashed instance simply stops heartbeating, and its peers take back its leases
   (``leases.reclaim_stale_leases``).
2. ``checker_state`` is the checker's own health ("ok" or "degraded": judge down, no network),
   never a proxy's. ``status`` shows the most recent live instance's.
3. Times are the instance's clock (instances on one PostgreSQL should run NTP).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, or_, select, update

from ._rows import utcnow
from .models import InstanceRow

CHECKER_STATES = ("ok", "degraded")


@dataclass(frozen=True)
class InstanceInfo:
    id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    checker_state: str
    checker_reason: str | None
    last_round_at: datetime | None
    own_ips: tuple[str, ...]


def register_instance(
    engine: Engine,
    *,
    now: datetime | None = None,
    instance_id: str | None = None,
    hostname: str | None = None,
    pid: int | None = None,
) -> str:
    """Insert this process's row; returns its id (a new uuid4 hex unless given)."""
    now = now or utcnow()
    instance_id = instance_id or uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(
            insert(InstanceRow).values(
                id=instance_id,
                hostname=hostname or socket.gethostname(),
                pid=os.getpid() if pid is None else pid,
                started_at=now,
                heartbeat_at=now,
                checker_state="ok",
                own_ips=[],
            )
        )
    return instance_id


def heartbeat(
    engine: Engine,
    instance_id: str,
    checker_state: str = "ok",
    checker_reason: str | None = None,
    last_round_at: datetime | None = None,
    own_ips: Sequence[str] = (),
    *,
    now: datetime | None = None,
) -> bool:
    """Record that the instance is alive and how its checker is; False if its row is gone."""
    if checker_state not in CHECKER_STATES:
        raise ValueError(f"checker_state must be one of {CHECKER_STATES}, not {checker_state!r}")
    with engine.begin() as conn:
        stmt = (
            update(InstanceRow)
            .where(InstanceRow.id == instance_id)
            .values(
                heartbeat_at=now or utcnow(),
                checker_state=checker_state,
                checker_reason=checker_reason,
                last_round_at=last_round_at,
                own_ips=list(own_ips),
            )
        )
        return conn.execute(stmt).rowcount == 1


def mark_stopped(engine: Engine, instance_id: str, *, now: datetime | None = None) -> None:
    """A clean exit: the instance is no longer live, at once."""
    with engine.begin() as conn:
        conn.execute(
            update(InstanceRow).where(InstanceRow.id == instance_id).values(stopped_at=now or utcnow())
        )


def live_instances(
    engine: Engine, within_seconds: float, *, now: datetime | None = None
) -> list[InstanceInfo]:
    """Instances not stopped whose heartbeat is at most ``within_seconds`` old, latest first."""
    cutoff = (now or utcnow()) - timedelta(seconds=within_seconds)
    with engine.begin() as conn:
        rows = conn.execute(
            select(InstanceRow)
            .where(InstanceRow.stopped_at.is_(None), InstanceRow.heartbeat_at >= cutoff)
            .order_by(InstanceRow.heartbeat_at.desc())
        ).all()
    return [
        InstanceInfo(
            r.id,
            r.hostname,
            r.pid,
            r.started_at,
            r.heartbeat_at,
            r.stopped_at,
            r.checker_state,
            r.checker_reason,
            r.last_round_at,
            tuple(r.own_ips or ()),
        )
        for r in rows
    ]


def prune_instances(engine: Engine, now: datetime, *, older_than_days: float = 7) -> int:
    """Delete rows of instances stopped or silent for longer than ``older_than_days``."""
    cutoff = now - timedelta(days=older_than_days)
    with engine.begin() as conn:
        stmt = delete(InstanceRow).where(
            or_(InstanceRow.stopped_at < cutoff, InstanceRow.heartbeat_at < cutoff)
        )
        return conn.execute(stmt).rowcount
