"""Daemon instances: who is running, is its checker able to work, when did it last finish a round.

Rules:
1. Each daemon process registers once, heartbeats while it runs (every
   ``[daemon].heartbeat_interval``, and at once when its checker changes state) and marks itself
   stopped on a clean exit. Its row stores the interval it runs with. An instance is *live* if
   it has not stopped and it heartbeated within ``silence_allowed`` (``STALE_BEATS`` of its own
   intervals, at least ``MIN_SILENCE``): ``is_live`` is the one answer, for ``status``,
   ``doctor``, ``NoHealthyProxy`` and the lease take-back (``leases.reclaim_stale_leases``). A
   crashed instance simply stops heartbeating, and its peers take back its leases.
2. On SQLite the daemon's flock (daemon/lock.py) proves more: when its lock file exists and
   nobody holds it, no daemon runs, whatever the rows say; a daemon that takes the flock marks
   every other row stopped (``mark_others_stopped``: they are dead). ``/proc/locks`` is read, so
   asking never takes the lock a starting daemon needs.
3. ``checker_state`` is the checker's own health ("ok" or "degraded": judge down, no network),
   never a proxy's. ``status`` shows the most recent live instance's.
4. Times are the instance's clock (instances on one PostgreSQL should run NTP).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pathlib import Path

from sqlalchemy import Engine, delete, insert, or_, select, update

from ._rows import utcnow
from .models import InstanceRow

CHECKER_STATES = ("ok", "degraded")
STALE_BEATS = 3  # heartbeats missed before an instance counts as gone (rule 1)
MIN_SILENCE = 15.0  # seconds: never less, so a short interval on a busy host is not "dead"
LEGACY_SILENCE = 60.0  # seconds, for a row written before its interval was stored
MAX_SILENCE = STALE_BEATS * 3600.0  # [daemon].heartbeat_interval is at most 3600 s


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
    heartbeat_interval: float | None = None


def silence_allowed(heartbeat_interval: float | None) -> float:
    """Seconds without a heartbeat before an instance with this interval counts as gone (rule 1)."""
    if heartbeat_interval is None:
        return LEGACY_SILENCE
    return max(STALE_BEATS * heartbeat_interval, MIN_SILENCE)


def is_live(stopped_at: datetime | None, heartbeat_at: datetime, heartbeat_interval: float | None, now: datetime) -> bool:
    """The one liveness rule (rule 1): not stopped, and heard from recently enough."""
    return stopped_at is None and (now - heartbeat_at).total_seconds() <= silence_allowed(heartbeat_interval)


def register_instance(
    engine: Engine,
    *,
    now: datetime | None = None,
    instance_id: str | None = None,
    hostname: str | None = None,
    pid: int | None = None,
    heartbeat_interval: float | None = None,
) -> str:
    """Insert this process's row; returns its id (a new uuid4 hex unless given). Give the
    ``heartbeat_interval`` it runs with (rule 1)."""
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
                heartbeat_interval=heartbeat_interval,
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
    heartbeat_interval: float | None = None,
) -> bool:
    """Record that the instance is alive and how its checker is (and its interval, when given:
    a reload may change it); False if its row is gone."""
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
                **({"heartbeat_interval": heartbeat_interval} if heartbeat_interval is not None else {}),
            )
        )
        return conn.execute(stmt).rowcount == 1


def mark_stopped(engine: Engine, instance_id: str, *, now: datetime | None = None) -> None:
    """A clean exit: the instance is no longer live, at once."""
    with engine.begin() as conn:
        conn.execute(
            update(InstanceRow).where(InstanceRow.id == instance_id).values(stopped_at=now or utcnow())
        )


def mark_others_stopped(engine: Engine, instance_id: str, *, now: datetime | None = None) -> int:
    """Mark every instance but ``instance_id`` stopped: only for a caller that proves no other
    daemon runs (the SQLite flock, rule 2). Returns how many rows were dead but not stopped."""
    with engine.begin() as conn:
        stmt = (update(InstanceRow).where(InstanceRow.id != instance_id, InstanceRow.stopped_at.is_(None))
                .values(stopped_at=now or utcnow()))
        return conn.execute(stmt).rowcount


def live_instances(engine: Engine, *, now: datetime | None = None) -> list[InstanceInfo]:
    """Live instances (rules 1-2), latest heartbeat first."""
    now = now or utcnow()
    if daemon_lock_held(engine) is False:
        return []
    with engine.begin() as conn:
        rows = conn.execute(
            select(InstanceRow)
            .where(InstanceRow.stopped_at.is_(None), InstanceRow.heartbeat_at >= now - timedelta(seconds=MAX_SILENCE))
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
            r.heartbeat_interval,
        )
        for r in rows
        if is_live(r.stopped_at, r.heartbeat_at, r.heartbeat_interval, now)
    ]


def daemon_lock_path(db_path: Path) -> Path:
    """The flock file of the SQLite database ``db_path`` (daemon/lock.py)."""
    return db_path.with_name(db_path.name + ".daemon.lock")


def daemon_lock_held(engine: Engine) -> bool | None:
    """Whether a daemon holds the flock of this SQLite database (rule 2). None when that says
    nothing: PostgreSQL, no lock file yet (no daemon ever ran here), or no ``/proc/locks``."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    try:
        inode = os.stat(daemon_lock_path(Path(engine.url.database))).st_ino
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            locks = fh.read().splitlines()
    except OSError:
        return None
    for line in locks:  # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234567 0 EOF"; waiters have "->"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def prune_instances(engine: Engine, now: datetime, *, older_than_days: float = 7) -> int:
    """Delete rows of instances stopped or silent for longer than ``older_than_days``."""
    cutoff = now - timedelta(days=older_than_days)
    with engine.begin() as conn:
        stmt = delete(InstanceRow).where(
            or_(InstanceRow.stopped_at < cutoff, InstanceRow.heartbeat_at < cutoff)
        )
        return conn.execute(stmt).rowcount
