"""The account guard's reads: each captcha service's proxy errors in its window (guard.py).

Rules:
1. The ``reports`` table is the guard's only state: a report names its ``service`` and kind
   (store/reports.py), so every worker process and every daemon on the database sees the same
   budget, and nothing has to be reset: errors leave the window by themselves.
2. ``check`` is the hand-out gate (worker/pool.py runs it once per call, before selection): one
   indexed count while the budget holds; the details of a refusal only when it is spent.
3. ``guard_states`` is every service worth showing: the documented ones, those the config names
   and those reports named within the longest window; the status, the page, ``/healthz`` and
   ``/metrics`` read it (and the notifier, through ``GuardState.tripped`` and ``reason``).
4. Subnets (``SubnetRule``): when a proxy error is reported (any service, or none) and the proxy
   errors reported in the last ``window`` seconds on proxies of its /24 (IPv4) or /48 (IPv6)
   number at least ``errors``, from at least two of its proxies, every proxy of that subnet is
   held back together, unless the subnet has more enabled proxies than the guard rail lets
   reports take out (store/reports.py rule 2: feedback alone never takes out more of the pool;
   the service's budget still guards the account then) (``proxies.held_back`` holds the reason; ``Eligibility`` refuses them), in
   the report's own transaction. With the defaults (3 against budgets of 5 and more) that comes
   before a budget trips. A passing check through any proxy of the subnet lets them all back
   (``release_subnets``, in the check's write-back); errors still in the window count again if
   another is reported. Host names have no subnet; ASNs are not looked at (no geo database yet).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, true, update

from ..guard import DOCUMENTED, Budget, GuardState, budget_for, longest_window, subnet_of
from ._rows import utcnow
from .models import ProxyRow as P
from .models import ReportRow as R


def _counted(service: str, since: datetime) -> Any:
    """guard.py rules 3, 4: proxy errors reported for ``service`` after ``since``."""
    return (R.service == service, R.kind == "proxy_error", R.reported_at > since)


# The gate's one statement, built once: it runs on every hand-out that names a service.
_ERRORS = select(func.count()).select_from(R).where(*_counted(bindparam("service"), bindparam("since")))  # type: ignore[arg-type]


def check(engine: Engine, budget: Budget, *, now: datetime | None = None) -> None:
    """Raise ``GuardTripped`` when ``budget`` is spent (rule 2)."""
    if not budget.enabled:
        return
    now = now or utcnow()
    since = now - timedelta(seconds=budget.window)
    with engine.connect() as conn:
        errors = int(conn.scalar(_ERRORS, {"service": budget.service, "since": since}) or 0)
        if errors < budget.max_proxy_errors:
            return
        state = _state(conn, budget, now)
    if state.tripped:  # an error may have left the window between the two reads
        raise state.refusal()


def guard_state(engine: Engine, budget: Budget, *, now: datetime | None = None) -> GuardState:
    with engine.connect() as conn:
        return _state(conn, budget, now or utcnow())


def _state(conn: Connection, budget: Budget, now: datetime) -> GuardState:
    since = now - timedelta(seconds=budget.window)
    rows = conn.execute(
        select(R.reported_at, R.error, P.key, P.host)
        .join(P, P.id == R.proxy_id)
        .where(*_counted(budget.service, since))
        .order_by(R.reported_at.desc(), R.id.desc())
    ).all()
    n, errors = budget.max_proxy_errors, len(rows)
    tripped = budget.enabled and errors >= n
    # guard.py rule 4: it holds until the n-th newest error leaves the window.
    resumes_at = rows[n - 1].reported_at + timedelta(seconds=budget.window) if tripped else None
    by_error = Counter(r.error or "?" for r in rows)
    proxies = Counter(r.key for r in rows)
    subnets = Counter(s for s in (subnet_of(r.host) for r in rows) if s is not None)
    return GuardState(
        service=budget.service,
        budget=n,
        window=budget.window,
        errors=errors,
        tripped=tripped,
        resumes_at=resumes_at,
        by_error=tuple(by_error.most_common()),
        proxies=tuple(proxies.most_common()),
        subnets=tuple(subnets.most_common()),
    )


def guard_states(engine: Engine, settings: Any, *, now: datetime | None = None) -> dict[str, GuardState]:
    """Every service worth showing (rule 3), by name. ``settings``: ``config.Settings``."""
    now = now or utcnow()
    guard = settings.guard
    longest = longest_window(guard)
    with engine.connect() as conn:
        named = conn.scalars(
            select(R.service).distinct().where(R.service.is_not(None), R.reported_at >= now - timedelta(seconds=longest))
        ).all()
        services = sorted({*DOCUMENTED, *guard.services, *named})
        return {s: _state(conn, budget_for(guard, s), now) for s in services}


@dataclass(frozen=True)
class SubnetRule:
    """Rule 4: ``errors`` proxy errors (0: off) from two or more proxies of one subnet within
    ``window`` seconds hold the subnet back."""

    errors: int = 3
    window: float = 600.0


def hold_subnet(conn: Connection, proxy_id: int, rule: SubnetRule, now: datetime, most: Callable[[int], int]) -> str | None:
    """Rule 4, after a proxy error on ``proxy_id`` was stored in ``conn``'s transaction: the
    reason the subnet is now held back, or None. ``most(enabled)``: the guard rail's budget."""
    if rule.errors <= 0:
        return None
    subnet = conn.scalar(select(P.subnet).where(P.id == proxy_id))
    if subnet is None:
        return None
    errors, proxies = conn.execute(
        select(func.count(), func.count(func.distinct(R.proxy_id)))
        .select_from(R)
        .join(P, P.id == R.proxy_id)
        .where(P.subnet == subnet, R.kind == "proxy_error", R.reported_at > now - timedelta(seconds=rule.window))
    ).one()
    if errors < rule.errors or proxies < 2:
        return None
    members, enabled = conn.execute(
        select(func.count().filter(P.subnet == subnet), func.count()).where(P.enabled == true())
    ).one()
    if members > most(int(enabled)):
        return None
    reason = (f"held back with its subnet {subnet}: workers reported {errors} proxy errors on {proxies} of its proxies "
              f"in the last {rule.window / 60:g} min (since {now:%H:%M:%S} UTC); a passing check of any of them lets "
              "them back")
    conn.execute(update(P).where(P.subnet == subnet, P.held_back.is_(None)).values(held_back=reason))
    return reason


def release_subnets(conn: Connection, passed: Iterable[int]) -> None:
    """Rule 4: the subnets of proxies whose checks just passed are let back, in one statement."""
    ids = list(passed)
    if not ids:
        return
    held = select(P.subnet).where(P.id.in_(ids), P.held_back.is_not(None)).scalar_subquery()
    conn.execute(update(P).where(P.held_back.is_not(None), P.subnet.in_(held)).values(held_back=None))


def held_subnets(engine: Engine) -> list[tuple[str, int, str]]:
    """(subnet, proxies, reason) of every subnet held back now, for ``status`` and the page."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(P.subnet, func.count(), func.min(P.held_back)).where(P.held_back.is_not(None)).group_by(P.subnet)
            .order_by(P.subnet)
        ).all()
    return [(r[0], int(r[1]), r[2]) for r in rows]


__all__ = ["SubnetRule", "check", "guard_state", "guard_states", "held_subnets", "hold_subnet", "release_subnets"]
