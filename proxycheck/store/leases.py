"""Who checks which proxy: claiming due proxies under a lease, and fenced write-back.

Rules:
1. Claim in one short transaction, check outside any transaction, write back in another. No
   row lock or pooled connection is held across network I/O.
2. Due = enabled, ``next_check_at <= now`` and not leased (no lease, or an expired one: a
   crashed or hung instance's proxies are taken over when its lease runs out).
   On PostgreSQL ``now`` is the database clock and candidates are picked with
   ``FOR UPDATE SKIP LOCKED``, so any number of instances can claim concurrently without
   getting the same proxy. On SQLite the writer's ``BEGIN IMMEDIATE`` gives the same exclusion.
3. Every claim gets a fresh random ``lease_token``. Every write-back matches it: if the lease
   was lost (expired and taken over, or the proxy was disabled), nothing is written and the
   function says so. Results are idempotent, so at-least-once checking is fine.
4. A lease is taken back before it expires only when its owner is proven gone: on SQLite the
   daemon flock proves no other daemon runs (``release_all_leases`` at start); on PostgreSQL
   an owner that is not live (instances.py rule 1: stopped, silent for longer than a few of its
   own heartbeats, or without an instance row: ``reclaim_stale_leases``). A wrongly presumed-dead owner loses nothing but the
   write-back of that check (rule 3), so the proxy is checked again: at-least-once still holds.
5. Probe schedules: a claim carries each probe's latest result (read in the claim's
   transaction) and the write-back stores the probes that ran (probe_results.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, String, bindparam, cast, func, insert, or_, select, true, update

from ..geo import UNKNOWN
from ..health import HealthState, Transition
from ..proxy import Proxy
from ..result import CheckResult, LastRun, history_probes
from ..vantage import Sight
from . import exits, probe_results, vantages
from ._rows import PROXY_COLUMNS, STATE_COLUMNS, chunks, is_postgresql, proxy_from_row, state_from_row, utcnow
from .instances import live_instances
from .guard import release_subnets
from .models import CheckRow, InstanceRow
from .models import ProxyRow as P

_NO_LEASE = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}


@dataclass(frozen=True)
class Claim:
    """A proxy leased to one checker until ``lease_expires_at``."""

    proxy_id: int
    proxy: Proxy  # with its password: the checker needs it
    lease_token: str
    state: HealthState  # the state to ``health.advance`` from
    due_at: datetime  # its ``next_check_at`` when claimed
    lease_expires_at: datetime
    never_checked: bool = False  # its first check (a new proxy from a sync or an import)
    # Each probe's latest result (probe_results.py), for the checker's schedule.
    last_probes: Mapping[str, LastRun] = field(default_factory=dict, compare=False)
    # Other vantages' latest sights of it (store/vantages.py rule 2), for ip_locked (vantage.py).
    peers: tuple[Sight, ...] = field(default=(), compare=False)


def claim_due(
    engine: Engine, owner: str, limit: int, lease_seconds: float, *, now: datetime | None = None,
    vantage: str | None = None, peer_window: float = 0.0,
) -> list[Claim]:
    """Lease up to ``limit`` due proxies to ``owner`` (an instance id), most overdue first.

    ``now`` overrides the clock (tests); by default PostgreSQL uses its own ``now()`` and SQLite
    the local clock (SQLite is single-host). With ``vantage``, each claim carries the other
    vantages' sights of the last ``peer_window`` seconds (store/vantages.py rule 2).
    """
    if limit <= 0:
        return []
    lease = timedelta(seconds=lease_seconds)
    with engine.begin() as conn:
        pg = is_postgresql(conn)
        clock: Any = func.now() if pg and now is None else (now or utcnow())
        due = (
            select(P.id)
            .where(
                P.enabled == true(),
                P.next_check_at <= clock,
                or_(P.lease_expires_at.is_(None), P.lease_expires_at <= clock),
            )
            .order_by(P.next_check_at, P.id)
            .limit(limit)
        )
        if pg:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(P)
            .where(P.id.in_(due.scalar_subquery()))
            .values(lease_owner=owner, lease_token=_random_token(conn), lease_expires_at=clock + lease)
            .returning(
                P.id, P.lease_token, P.next_check_at, P.lease_expires_at, P.last_checked_at, *PROXY_COLUMNS,
                *STATE_COLUMNS
            )
        )
        rows = conn.execute(stmt).all()
        last = probe_results.load(conn, [r.id for r in rows])
        seen_by = ({} if vantage is None else
                   vantages.peers(conn, [r.id for r in rows], vantage, (now or utcnow()) - timedelta(seconds=peer_window)))
    rows.sort(key=lambda r: (r.next_check_at, r.id))
    claims = []
    for r in rows:
        state = state_from_row(r)
        carried = probe_results.for_claim(last[r.id], state.reason)
        claims.append(Claim(r.id, proxy_from_row(r), r.lease_token, state, r.next_check_at, r.lease_expires_at,
                            r.last_checked_at is None, carried, tuple(seen_by.get(r.id, ()))))
    return claims


def _random_token(conn: Connection) -> Any:
    # Generated per row by the database, so one UPDATE hands every row its own token.
    if is_postgresql(conn):
        return cast(func.gen_random_uuid(), String)
    return func.lower(func.hex(func.randomblob(16)))


def record_result(
    engine: Engine, claim: Claim, result: CheckResult, transition: Transition, instance_id: str | None
) -> bool:
    """Store one check: new state on the proxy, a history row, lease cleared — one transaction.
    Returns False, writing nothing, if the lease was lost."""
    return record_results(engine, [(claim, result, transition)], instance_id)[0]


def record_results(
    engine: Engine,
    items: Iterable[tuple[Claim, CheckResult, Transition]],
    instance_id: str | None,
    *,
    last_round_at: datetime | None = None,
    follow_up: exits.FollowUp | None = None,
) -> list[bool]:
    """``record_result`` for many checks in one transaction (SQLite's single writer commits
    once per batch instead of once per proxy). One bool per item, in order. With
    ``last_round_at`` the instance's row says so in the same transaction (``status`` shows
    the stored checks and the round at once). With ``follow_up`` a usable proxy whose exit IP
    needs another reading soon (sticky.py rule 6) is due then, if that is before its next check."""
    items = list(items)
    if not items:
        return []
    for claim, result, _ in items:
        if result.healthy is None:
            raise ValueError(
                f"{result.reason} says nothing about {claim.proxy}: use reschedule_unavailable, not record_result"
            )
    with engine.begin() as conn:
        written = _leases_held(conn, items)
        stored = [(claim, result, transition) for (claim, result, transition), ok in zip(items, written) if ok]
        # The exit IP over time (exits.py rule 2), for the whole batch in a few statements; its
        # summary goes into the same UPDATE of each proxy row as the check's new state.
        found = exits.record_exits(conn, [(claim.proxy_id, result) for claim, result, _ in stored], follow_up)
        _write_states(conn, stored, found)
        if stored:  # one executemany each, not three statements per check (issue 21: they were half the CPU)
            conn.execute(insert(CheckRow), [history_values(claim.proxy_id, result, instance_id) for claim, result, _ in stored])
            probe_results.save_many(conn, [(claim.proxy_id, result) for claim, result, _ in stored])
        release_subnets(conn, [claim.proxy_id for claim, result, _ in stored if result.healthy])  # guard.py rule 4
        if instance_id is not None and last_round_at is not None:
            conn.execute(update(InstanceRow).where(InstanceRow.id == instance_id).values(last_round_at=last_round_at))
        return written


def _leases_held(conn: Connection, items: list[tuple[Claim, CheckResult, Transition]]) -> list[bool]:
    """Which items' leases are still ours (rule 3), read first (``FOR UPDATE`` on PostgreSQL, in
    id order; SQLite's writer already holds the write lock). The same proxy twice in a batch:
    only its first write holds the lease."""
    tokens: dict[int, str | None] = {}
    ids = sorted({claim.proxy_id for claim, _, _ in items})
    for chunk in chunks(ids):
        query = select(P.id, P.lease_token).where(P.id.in_(chunk)).order_by(P.id)
        if is_postgresql(conn):
            query = query.with_for_update()
        tokens.update((row.id, row.lease_token) for row in conn.execute(query))
    written = []
    for claim, _, _ in items:
        written.append(tokens.get(claim.proxy_id) == claim.lease_token)
        tokens.pop(claim.proxy_id, None)
    return written


def _write_states(conn: Connection, stored: list[tuple[Claim, CheckResult, Transition]], found: exits.Found) -> None:
    """Each stored check's new state, with its exit summary and any sticky follow-up visit
    (sticky.py rule 6: due then, if that is before its next check), in one UPDATE per proxy row:
    one executemany per shape of values (a batch has a few: passes, failures, with or without
    facts), each row still matched on its token."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for claim, result, transition in stored:
        values = _state_values(result, transition)
        values.update(found.summaries.get(claim.proxy_id, {}))
        soon = found.follow_ups.get(claim.proxy_id)
        if soon is not None and soon < transition.next_check_at:
            values["next_check_at"] = soon
        shapes.setdefault(tuple(values), []).append({"_pid": claim.proxy_id, "_token": claim.lease_token, **values})
    for columns, rows in shapes.items():
        stmt = (update(P).where(P.id == bindparam("_pid"), P.lease_token == bindparam("_token"))
                .values({c: bindparam(c) for c in columns}))
        conn.execute(stmt, rows)


def _state_values(result: CheckResult, transition: Transition) -> dict[str, Any]:
    """The proxy row's columns one completed check sets."""
    state = transition.state
    values: dict[str, Any] = {
        "state": state.state,
        "consecutive_successes": state.consecutive_successes,
        "consecutive_failures": state.consecutive_failures,
        "failing_streak": state.failing_streak,
        "code": state.code,
        "reason": state.reason,
        "state_changed_at": state.changed_at,
        "last_checked_at": result.started_at,
        "next_check_at": transition.next_check_at,
        **_NO_LEASE,
    }
    if result.healthy:
        values["last_success_at"] = result.started_at
        if state.code is None:  # healthy again: the old failure no longer explains anything
            values.update(detail=None, probe=None)
    else:
        values.update(detail=result.detail, probe=result.probe)
    # A failing check that learnt nothing keeps the last known facts.
    facts = {
        "latency_ms": result.latency_ms,
        "exit_ip": result.exit_ip,
        "anonymity": result.anonymity,
        "resolved_ip": result.resolved_ip,
    }
    values.update({k: v for k, v in facts.items() if v is not None})
    if result.exit_ip:  # where this exit IP is, known or not: the old exit's place no longer applies
        values.update(geo_values(result), geo_mismatch=result.geo_mismatch)
    values.update(exits.target_values(result))  # per-target bans (exits.py rule 1)
    return values


def history_values(proxy_id: int, result: CheckResult, instance_id: str | None) -> dict[str, Any]:
    """The ``checks`` row for one completed check (also what bench/daemon_bench.py bulk-inserts)."""
    return {
        "proxy_id": proxy_id,
        "checked_at": result.started_at,
        "healthy": result.healthy,
        "code": result.code,
        "reason": result.reason,
        "probe": result.probe,
        "detail": None if result.healthy else result.detail,  # a pass's facts are in exit_ip/anonymity
        "elapsed_ms": result.elapsed_ms,
        "exit_ip": result.exit_ip,
        **geo_values(result),
        "anonymity": result.anonymity,
        "probes": history_probes(result.probes),
        "instance_id": instance_id,
        "vantage": result.vantage,
        "vantage_ip": result.vantage_ip,
        "sights": [s.as_dict() for s in result.sights],
    }


def geo_values(result: CheckResult) -> dict[str, Any]:
    """``exit_country``, ``exit_asn``, ``exit_as_org`` of a check (None: unknown, or no [geo])."""
    return (result.geo or UNKNOWN).as_dict()


def release_claims(engine: Engine, claims: Sequence[Claim]) -> int:
    """Give back leases of checks that were not done (shutdown); they stay due. Returns how
    many leases were still ours."""
    return _fenced_update(engine, claims, {})


def reschedule_unavailable(engine: Engine, claims: Sequence[Claim], next_check_at: datetime) -> int:
    """``checker_unavailable``: no state change and no history, just the next check time
    (``health.retry_after_unavailable``) and the lease cleared. Returns rows updated."""
    return _fenced_update(engine, claims, {"next_check_at": next_check_at})


def _fenced_update(engine: Engine, claims: Sequence[Claim], values: dict[str, Any]) -> int:
    if not claims:
        return 0
    stmt = (
        update(P)
        .where(P.id == bindparam("b_id"), P.lease_token == bindparam("b_token"))
        .values(**values, **_NO_LEASE)
    )
    with engine.begin() as conn:  # one executemany: its rowcount is the sum over the claims
        return conn.execute(stmt, [{"b_id": c.proxy_id, "b_token": c.lease_token} for c in claims]).rowcount


def release_all_leases(engine: Engine) -> int:
    """Clear every lease. Only for a caller that proves no other daemon runs (the SQLite flock):
    the leases left are a dead daemon's, and its proxies are due again at once."""
    with engine.begin() as conn:
        return conn.execute(update(P).where(P.lease_owner.is_not(None)).values(**_NO_LEASE)).rowcount


def reclaim_stale_leases(engine: Engine, *, now: datetime | None = None) -> int:
    """Clear leases whose owner is not live (instances.py rule 1: stopped, silent for longer than
    its own heartbeats allow, or no instance row at all). Returns how many were taken back."""
    alive = [i.id for i in live_instances(engine, now=now)]
    with engine.begin() as conn:
        stmt = update(P).where(P.lease_owner.is_not(None), P.lease_owner.not_in(alive)).values(**_NO_LEASE)
        return conn.execute(stmt).rowcount


def first_checks_due(engine: Engine) -> tuple[int, datetime | None]:
    """Enabled proxies never checked yet, and when the last of them is due (what the daemon logs
    after a sync or an import: when will the new proxies have verdicts)."""
    with engine.begin() as conn:
        row = conn.execute(
            select(func.count(), func.max(P.next_check_at)).where(P.enabled == true(), P.last_checked_at.is_(None))
        ).one()
    return row[0], row[1]
