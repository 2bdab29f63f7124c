"""What may be handed out to a worker: one rule, as a value, a SQL expression and a predicate.

Rules:
1. ``Eligibility`` states the rule once (its docstring); ``clause`` is its only SQL form and
   ``admits`` its only Python form. Every read that hands out or counts proxies builds one of
   the two from an ``Eligibility``: the lists and picks (selection.py, usage.py), the hot re-read
   and the snapshot's views (selection.py ``HotReads``, worker/snapshot.py), leases
   (worker_leases.py) and the ``NoHealthyProxy`` counts (selection.py ``shortage``).
   tests/store/test_eligibility.py runs one table of rows through every form and asserts the
   same sets.
2. ``Filters`` is what a worker asked for. Its constructor is the one place that checks the
   values' types and ranges: anything else is a ``ValueError`` naming the parameter
   (worker/params.py turns keywords and query strings into one).
3. ``fresh_since`` is computed once per call (``Eligibility.at``), from the caller's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, and_, exists, func, literal_column, not_, or_, select, true

from ..geo import country_code, names_a_country
from ..guard import service_name
from ..vantage import IP_LOCKED
from ..sticky import DEFAULT_WINDOW, GATEWAY_TAG, ExitSummary, stability
from ._rows import has_tag, list_has
from .models import ProxyRow as P
from .models import UTCDateTime
from .models import WorkerLeaseRow as L

# Weakest first. A healthy proxy is never transparent (that is error 29), so "anonymous" and
# "elite" are the useful minimums.
ANONYMITY_LEVELS = ("transparent", "anonymous", "elite")
MAX_ASN = 2**32 - 1  # 32-bit AS numbers (RFC 6793)


def _strings(name: str, value: Any, *, optional: bool = False) -> None:
    if (optional and value is None) or (type(value) is frozenset and not value):  # the common cases: per hand-out
        return
    if not isinstance(value, frozenset) or not all(isinstance(v, str) and v for v in value):
        what = "a set of non-empty strings" + (" or None" if optional else "")
        raise ValueError(f"{name}: expected {what}, got {value!r}")


@dataclass(frozen=True)
class Filters:
    """What a worker asked for (rule 2). ``exclude`` holds ``Proxy.key`` values (already tried)."""

    tags: frozenset[str] = frozenset()
    schemes: frozenset[str] | None = None  # None: any scheme
    min_anonymity: str | None = None  # one of ANONYMITY_LEVELS; None: any
    exclude: frozenset[str] = frozenset()
    # A ban target's name: proxies usable for it, even if other targets ban them (exits.py rule 1).
    target: str | None = None
    # Only proxies whose exit IP was seen stable for ``sticky_seconds`` (sticky.py rule 3).
    sticky: bool = False
    sticky_seconds: float = DEFAULT_WINDOW
    # Where the exit was observed to be ([geo], geo.py): an ISO 3166-1 alpha-2 code (any case in,
    # upper case kept) and an autonomous system number. Not the tags: observed values.
    country: str | None = None
    asn: int | None = None
    # The captcha service the proxy is for (guard.py). Not part of ``Eligibility``: its budget is
    # a gate checked once before selection (worker/pool.py ``_eligibility``), not a row's property.
    service: str | None = None

    def __post_init__(self) -> None:
        _strings("tags", self.tags)
        _strings("scheme", self.schemes, optional=True)
        _strings("exclude", self.exclude)
        if self.min_anonymity is not None and (
            not isinstance(self.min_anonymity, str) or self.min_anonymity not in ANONYMITY_LEVELS
        ):
            raise ValueError(
                f"anonymity: {self.min_anonymity!r} is not a level (known, weakest first: "
                f"{', '.join(ANONYMITY_LEVELS)})"
            )
        if self.target is not None and (not isinstance(self.target, str) or not self.target.strip()):
            raise ValueError(f"target: expected a ban target's name, got {self.target!r}")
        if not isinstance(self.sticky, bool):
            raise ValueError(f"sticky: expected true or false, got {self.sticky!r}")
        seconds = self.sticky_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (0 < seconds < math.inf):
            raise ValueError(f"sticky_seconds: expected a positive number of seconds, got {seconds!r}")
        if self.service is not None:
            object.__setattr__(self, "service", service_name(self.service))
        if self.country is not None:
            code = country_code(self.country) if isinstance(self.country, str) else None
            if code is None:
                raise ValueError(f"country: expected a two-letter ISO 3166-1 code (us, DE, ...), got {self.country!r}")
            object.__setattr__(self, "country", code)
        if self.asn is not None and (isinstance(self.asn, bool) or not isinstance(self.asn, int)
                                     or not 0 < self.asn <= MAX_ASN):
            raise ValueError(f"asn: expected an autonomous system number from 1 to {MAX_ASN}, got {self.asn!r}")

    @property
    def trusts_country_tag(self) -> bool:
        """The request selects by a ``country:xx`` tag: a ``geo_mismatch`` proxy (one whose tag
        its exit contradicts) is refused to it (``Eligibility``)."""
        return names_a_country(self.tags)

    @property
    def needs_full_row(self) -> bool:
        """Filters the snapshot's narrow candidates cannot judge: ask the database."""
        return (self.target is not None or self.sticky or self.country is not None or self.asn is not None
                or self.trusts_country_tag)

    @property
    def anonymity_levels(self) -> tuple[str, ...] | None:
        if self.min_anonymity is None:
            return None
        return ANONYMITY_LEVELS[ANONYMITY_LEVELS.index(self.min_anonymity) :]

    def matches(self, scheme: str, anonymity: str | None, tags: frozenset[str]) -> bool:
        """Tags, schemes and anonymity: the part of ``Eligibility.admits`` a snapshot's narrow
        candidate can answer (``exclude`` is per call, so the snapshot checks it per proposal)."""
        if self.tags and not self.tags <= tags:
            return False
        if self.schemes is not None and scheme not in self.schemes:
            return False
        levels = self.anonymity_levels
        return levels is None or anonymity in levels

    def describe(self) -> str:
        parts = []
        if self.tags:
            parts.append(f"tags {sorted(self.tags)}")
        if self.schemes:
            parts.append(f"scheme {' or '.join(sorted(self.schemes))}")
        if self.min_anonymity:
            parts.append(f"anonymity at least {self.min_anonymity}")
        if self.exclude:
            parts.append(f"{len(self.exclude)} excluded")
        if self.target is not None:
            parts.append(f"usable for ban target {self.target!r}")
        if self.sticky:
            parts.append(f"sticky exit (stable for {self.sticky_seconds:g} s)")
        if self.country is not None:
            parts.append(f"exit in {self.country}")
        if self.asn is not None:
            parts.append(f"exit in AS{self.asn}")
        return ", ".join(parts)


@dataclass(frozen=True)
class LeaseLimits:
    """``[worker].max_concurrent_per_proxy`` at ``now``. ``cooldown_seconds`` is in each ended
    lease's ``cool_until`` (store/worker_leases.py rule 1). ``now`` is the lease clock
    (worker_leases.py rule 5): a datetime, or on PostgreSQL a SQL clock expression
    (``LEASE_CLOCK``) that ``clause`` compiles in; ``admits`` needs a datetime (it is given the
    lease facts, ``Facts.leases_held`` and ``Facts.cooling``, already judged at it)."""

    max_concurrent: int
    now: datetime | ColumnElement[Any]


# PostgreSQL's lease clock for a pick: the statement's start, the time its snapshot was taken.
LEASE_CLOCK: ColumnElement[Any] = func.statement_timestamp()


class Facts(NamedTuple):
    """One proxy as ``Eligibility.admits`` judges it: ``FACT_COLUMNS`` as Python values, and
    (for a lease) how many leases on it are held and whether an ended one is still cooling."""

    key: str
    enabled: bool
    state: str
    reason: str | None
    last_success_at: datetime | None
    usable_at: datetime | None
    usable_for: frozenset[str]
    tags: frozenset[str]
    scheme: str
    anonymity: str | None
    exit_run_seconds: float | None
    exit_change_gap: float | None
    held_back: str | None
    exit_country: str | None = None
    exit_asn: int | None = None
    geo_mismatch: str | None = None
    leases_held: int = 0
    cooling: bool = False


FACT_COLUMNS = (P.key, P.enabled, P.state, P.reason, P.last_success_at, P.usable_at, P.usable_for, P.tags,
                P.scheme, P.anonymity, P.exit_run_seconds, P.exit_change_gap, P.held_back, P.exit_country, P.exit_asn,
                P.geo_mismatch)


def usable(healthy: bool, reason: str | None) -> bool:
    """Handed out for some target: healthy, or failing only on bans (exits.py rule 1)."""
    return healthy or reason == "banned"


def held(now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """The lease row is held at ``now`` (a datetime or a SQL clock expression; worker_leases.py
    rule 1)."""
    return and_(L.released_at.is_(None), L.expires_at > now)


def cooling(now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """The lease row has ended and still cools its proxy at ``now`` (worker_leases.py rules 1
    and 4: with ``cooldown_seconds = 0`` it never cools, however the clocks compare)."""
    has_cooldown = L.cool_until > func.coalesce(L.released_at, L.expires_at)
    return and_(L.cool_until > now, has_cooldown, ~held(now))


def free(proxy_id: Any, now: datetime | ColumnElement[Any], max_concurrent: int) -> ColumnElement[bool]:
    """The proxy ``proxy_id`` (a column or a value) has a free slot at ``now`` and is not cooling."""
    held_here = select(func.count()).select_from(L).where(L.proxy_id == proxy_id, held(now)).scalar_subquery()
    return and_(held_here < max_concurrent, ~exists().where(L.proxy_id == proxy_id, cooling(now)))


@dataclass(frozen=True)
class Eligibility:
    """A proxy may be handed out iff all of these hold:

    - it is enabled, and not held back with its subnet (``held_back``: worker reports of proxy
      errors concentrated on its /24 or /48 until a check through one of them passes:
      store/guard.py rule 4);
    - without a ``target``: it is ``healthy`` and its last successful check is at or after
      ``fresh_since`` (now minus ``[worker].max_age``), so workers stop getting proxies when the
      daemon stops checking;
    - with a ``target`` (a ban target's name): it is healthy, or unhealthy only for bans; it
      passed every probe but the ban probe at or after ``fresh_since`` (``usable_at``), and its
      latest ban check found that target fine (``usable_for``), even if other targets ban it;
    - with ``sticky``: its exit IP is ``stable`` for ``sticky_seconds`` (sticky.py rule 3: a
      chain of readings of the latest IP spans the window, no change within the window, not
      tagged ``rotating``);
    - it carries every tag asked for, has one of the schemes asked for, at least the anonymity
      asked for, and is not in ``exclude``;
    - with a ``country`` or an ``asn``: its latest exit IP was observed there ([geo]; an exit
      the databases do not know is in no country and no AS);
    - with a ``country:xx`` tag among the tags asked for: it has no ``geo_mismatch`` (its own
      ``country:xx`` tag names a country its exit was observed not to be in);
    - with ``allow_ip_locked`` (``[solver].allow_ip_locked``: the user put the captcha services'
      addresses on the provider's allow-list), a proxy whose verdict is ``ip_locked`` counts as
      healthy wherever the two rules above ask for it, with ``usable_at`` (its last check that
      passed every probe from a vantage it admits) as its freshness (vantage.py rule 3);
    - with ``leases`` (a lease being acquired): fewer than ``max_concurrent`` leases on it are
      held at ``leases.now`` and no ended lease on it is still cooling down then: ended with a
      ``cool_until`` after its end, still ahead (worker_leases.py rule 2).
    """

    fresh_since: datetime
    filters: Filters = field(default_factory=Filters)
    leases: LeaseLimits | None = None
    allow_ip_locked: bool = False

    @classmethod
    def at(cls, now: datetime, max_age: float, filters: Filters | None = None,
           leases: LeaseLimits | None = None, *, allow_ip_locked: bool = False) -> Eligibility:
        """The rule for a call at ``now`` (rule 3)."""
        return cls(now - timedelta(seconds=max_age), filters or Filters(), leases, allow_ip_locked)

    def leased_at(self, now: datetime | ColumnElement[Any]) -> Eligibility:
        """The same rule with the lease limits judged at ``now`` (worker_leases.py rule 5: the
        lease clock is read once the acquirer holds its lock)."""
        assert self.leases is not None, "a lease needs the lease limits"
        return replace(self, leases=replace(self.leases, now=now))

    def clause(self, conn: Connection | Any, *, walk_index: bool = False, cutoff: Any = None) -> ColumnElement[bool]:
        """The rule in SQL. ``walk_index``: selection.py rule 3. ``cutoff``: a bind parameter to
        compile in place of ``fresh_since`` (statements compiled once and run many times)."""
        fresh_since = self.fresh_since if cutoff is None else cutoff
        f = self.filters
        last_success: Any = P.last_success_at
        if walk_index:  # an expression, so no index serves the freshness test
            column = f"{P.__tablename__}.last_success_at"
            if conn.dialect.name == "sqlite":
                last_success = literal_column(f"+{column}", UTCDateTime())
            else:
                last_success = literal_column(f"({column} + interval '0 seconds')", UTCDateTime())
        clauses: list[ColumnElement[bool]] = [P.enabled == true(), P.held_back.is_(None)]
        locked = [P.reason == IP_LOCKED] if self.allow_ip_locked else []
        if f.target is not None:
            clauses += [
                or_(P.state == "healthy", P.reason == "banned", *locked),
                P.usable_at >= fresh_since,
                list_has(conn, P.usable_for, f.target),
            ]
        elif locked:
            clauses.append(or_(and_(P.state == "healthy", last_success >= fresh_since),
                               and_(*locked, P.usable_at >= fresh_since)))
        else:
            clauses += [P.state == "healthy", last_success >= fresh_since]
        if f.sticky:  # stability(...).state == "stable", as admits() asks it
            window = f.sticky_seconds
            clauses += [
                P.exit_run_seconds >= window,
                or_(P.exit_change_gap.is_(None), P.exit_change_gap >= window),
                not_(has_tag(conn, GATEWAY_TAG)),
            ]
        clauses += [has_tag(conn, tag) for tag in sorted(f.tags)]
        if f.schemes is not None:
            clauses.append(P.scheme.in_(sorted(f.schemes)))
        levels = f.anonymity_levels
        if levels is not None:
            clauses.append(P.anonymity.in_(levels))
        if f.exclude:
            clauses.append(P.key.not_in(sorted(f.exclude)))
        if f.country is not None:
            clauses.append(P.exit_country == f.country)
        if f.asn is not None:
            clauses.append(P.exit_asn == f.asn)
        if f.trusts_country_tag:
            clauses.append(P.geo_mismatch.is_(None))
        if self.leases is not None:
            clauses.append(free(P.id, self.leases.now, self.leases.max_concurrent))
        return and_(*clauses)

    def admits(self, p: Facts) -> bool:
        """The rule in Python, for in-memory paths (``HotReads.fetch``, the snapshot)."""
        f = self.filters
        if not p.enabled or p.held_back is not None:
            return False
        fresh = p.usable_at is not None and p.usable_at >= self.fresh_since
        locked = self.allow_ip_locked and p.reason == IP_LOCKED
        if f.target is not None:
            if not ((usable(p.state == "healthy", p.reason) or locked) and fresh and f.target in p.usable_for):
                return False
        elif not (p.state == "healthy" and p.last_success_at is not None and p.last_success_at >= self.fresh_since
                  or locked and fresh):
            return False
        if f.sticky:
            summary = ExitSummary(("?",) if p.exit_run_seconds is not None else (), p.exit_run_seconds, p.exit_change_gap)
            if stability(summary, f.sticky_seconds, gateway=GATEWAY_TAG in p.tags).state != "stable":
                return False
        if not f.matches(p.scheme, p.anonymity, p.tags) or p.key in f.exclude:
            return False
        if (f.country is not None and p.exit_country != f.country) or (f.asn is not None and p.exit_asn != f.asn):
            return False
        if f.trusts_country_tag and p.geo_mismatch is not None:
            return False
        if self.leases is not None:  # the facts are judged at leases.now already
            return p.leases_held < self.leases.max_concurrent and not p.cooling
        return True


__all__ = ["ANONYMITY_LEVELS", "FACT_COLUMNS", "MAX_ASN", "LEASE_CLOCK", "Eligibility", "Facts", "Filters", "LeaseLimits", "cooling", "free",
           "held", "usable"]
