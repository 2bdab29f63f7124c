"""Writing the proxy list: a source (CSV file, CLI import) into the ``proxies`` table.

Rules:
1. A proxy is identified by ``Proxy.key`` (URL without password). A changed password, tag set
   or label updates the row in place; history and health are kept.
2. ``sync_source`` makes the enabled rows of one source equal its list: rows missing from the
   list are *disabled*, never deleted (their history stays for ``status``), and rows that
   reappear are re-enabled and start over as ``unknown``. A proxy listed by a second source
   moves to it (the last sync wins), so deleting it from the first file does not disable it.
3. ``add_proxies`` (``proxycheck import``) adds and updates but never disables; it leaves the
   source of an enabled row alone and adopts disabled rows.
4. New and re-enabled proxies start ``unknown`` and are due at once, spread only as far as
   concurrency needs (``schedule.first_check_times``): an operator wants verdicts within
   seconds, and ten thousand new proxies must still not jump ahead of every known one.
   ``spread=False`` makes them all due at once (``run --once`` checks everything now). The
   report says when the first and the last of them are due. A changed password is due at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, true, update

from ..health import HealthPolicy, HealthState
from ..proxy import Proxy
from ..guard import subnet_of
from ._rows import chunks, state_values, tags_value, utcnow
from .models import ProxyRow as P
from .schedule import first_check_times, typical_check_seconds

DEFAULT_CONCURRENCY = 50  # [check].concurrency's default; callers pass the configured one


@dataclass(frozen=True)
class SyncReport:
    """What a sync changed; ``added + updated + reenabled + unchanged`` = proxies given.

    ``first_due_at``/``last_due_at``: when the first and the last added or re-enabled proxy is
    due (None when there is none), for the daemon's log. They say *when*, not *what*, and are
    left out of ``==``."""

    added: int = 0
    updated: int = 0
    disabled: int = 0
    unchanged: int = 0
    reenabled: int = 0
    first_due_at: datetime | None = field(default=None, compare=False)
    last_due_at: datetime | None = field(default=None, compare=False)


def sync_source(
    engine: Engine,
    source: str,
    proxies: Iterable[Proxy],
    now: datetime,
    *,
    policy: HealthPolicy | None = None,
    rng: random.Random | None = None,
    spread: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> SyncReport:
    """Make ``source``'s enabled proxies exactly ``proxies`` (the last of a repeated key wins).

    New and re-enabled proxies are due at once, batch after batch of ``concurrency`` (rule 4),
    within one ``policy.interval`` at most; with ``spread=False`` all at once. ``rng`` is
    accepted for callers of the former random spread and not used."""
    with engine.begin() as conn:
        return _upsert(conn, source, proxies, now, sync=True, spread=spread, concurrency=concurrency,
                       cap=(policy or HealthPolicy()).interval)


def add_proxies(
    engine: Engine,
    proxies: Iterable[Proxy],
    source: str = "cli",
    now: datetime | None = None,
    *,
    policy: HealthPolicy | None = None,
    rng: random.Random | None = None,
    spread: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> SyncReport:
    """Add new proxies and update known ones; never disables anything (``disabled`` is 0).
    New and re-enabled proxies are scheduled as by ``sync_source``."""
    now = now or utcnow()
    with engine.begin() as conn:
        return _upsert(conn, source, proxies, now, sync=False, spread=spread, concurrency=concurrency,
                       cap=(policy or HealthPolicy()).interval)


def _upsert(
    conn: Connection,
    source: str,
    proxies: Iterable[Proxy],
    now: datetime,
    *,
    sync: bool,
    spread: bool,
    concurrency: int,
    cap: float,
) -> SyncReport:
    wanted = {p.key: p for p in proxies}
    existing: dict[str, Any] = {}
    columns = (P.id, P.key, P.source, P.enabled, P.password, P.tags, P.label, P.next_check_at)
    for chunk in chunks(list(wanted)):
        existing.update((row.key, row) for row in conn.execute(select(*columns).where(P.key.in_(chunk))))

    added: list[dict[str, Any]] = []
    changes: list[tuple[int, dict[str, Any]]] = []
    starting: list[dict[str, Any]] = []  # the values of every added or re-enabled proxy
    updated = unchanged = reenabled = 0
    for key, proxy in wanted.items():
        row = existing.get(key)
        if row is None:
            added.append(_new_row(proxy, source, now))
            starting.append(added[-1])
            continue
        values: dict[str, Any] = {}
        if row.password != proxy.password:
            values["password"] = proxy.password
            values["next_check_at"] = min(row.next_check_at, now)
        if sorted(row.tags or ()) != tags_value(proxy):
            values["tags"] = tags_value(proxy)
        if row.label != proxy.label:
            values["label"] = proxy.label
        if sync and row.source != source:
            values["source"] = source
        if not row.enabled:
            values.update(_restart(source, now))
            starting.append(values)
            reenabled += 1
        elif values:
            updated += 1
        else:
            unchanged += 1
        if values:
            values["updated_at"] = now
            changes.append((row.id, values))  # the same dict: a re-enabled row is scheduled below

    due = [now] * len(starting)
    if spread and len(starting) > concurrency:
        due = first_check_times(len(starting), now, concurrency=concurrency,
                                check_seconds=typical_check_seconds(conn), cap=cap)
    for values, at in zip(starting, due):
        values["next_check_at"] = at
    if added:
        conn.execute(insert(P), added)
    for row_id, values in changes:
        conn.execute(update(P).where(P.id == row_id).values(**values))
    disabled = _disable_missing(conn, source, set(wanted), now) if sync else 0
    return SyncReport(len(added), updated, disabled, unchanged, reenabled,
                      first_due_at=min(due, default=None), last_due_at=max(due, default=None))


def _disable_missing(conn: Connection, source: str, keep: set[str], now: datetime) -> int:
    rows = conn.execute(select(P.id, P.key).where(P.source == source, P.enabled == true())).all()
    gone = [row.id for row in rows if row.key not in keep]
    for chunk in chunks(gone):
        # Clearing the lease fences out a check in flight: its result is discarded.
        conn.execute(
            update(P)
            .where(P.id.in_(chunk))
            .values(enabled=False, updated_at=now, lease_owner=None, lease_token=None, lease_expires_at=None)
        )
    return len(gone)


def _new_row(proxy: Proxy, source: str, now: datetime) -> dict[str, Any]:
    return {
        "key": proxy.key,
        "scheme": proxy.scheme,
        "host": proxy.host,
        "subnet": subnet_of(proxy.host),
        "port": proxy.port,
        "username": proxy.username,
        "password": proxy.password,
        "tags": tags_value(proxy),
        "label": proxy.label,
        "source": source,
        "enabled": True,
        "created_at": now,
        "updated_at": now,
        **state_values(HealthState()),
        "next_check_at": now,  # until _upsert schedules it
    }


def _restart(source: str, now: datetime) -> dict[str, Any]:
    """A re-enabled proxy's old verdict may be weeks old: it starts over as unknown."""
    return {
        "enabled": True,
        "source": source,
        **state_values(HealthState(changed_at=now)),
        "detail": None,
        "probe": None,
        "next_check_at": now,  # until _upsert schedules it
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
    }
