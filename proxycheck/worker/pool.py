"""``ProxyPool``: one process's handle on the daemon's database, for workers.

Rules:
1. Lazy: nothing is read until the first call. Then the config is loaded once (settings.py),
   the schema is checked (``SchemaOutOfDate`` names the fix), and a reader engine is opened; a
   writer engine only when something writes (the counted strategies, ``report``).
2. Thread-safe: engines are; the snapshot is swapped whole; a lock guards opening, and a second
   one makes one thread reload while the others keep proposing from the previous snapshot.
3. Fork-safe: a child never uses its parent's connections. At ``os.fork`` (``after_in_child``)
   and, failing that, on a pid change, each engine's pool is replaced with
   ``engine.dispose(close=False)`` (SQLAlchemy's recipe: the parent's connections are left
   untouched; we also keep the old pools referenced so the child never closes them), the locks
   are recreated and the RNG reseeded (forked children must not all draw the same proxies).
4. Fresh: ``random`` and ``fastest`` propose from the snapshot and re-read the proposal by id
   before handing it out (snapshot.py rule 1); ``least_used`` and ``round_robin`` pick in the
   database. Either way an unhealthy proxy is not handed out once its state is committed.
5. The snapshot is re-read every ``snapshot_seconds``, but never sooner than ten times its last
   load took (so at most ~10 % of a process's time goes to reloading, whatever the fleet size).
"""

from __future__ import annotations

import os
import random
import dataclasses
import socket
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any, Unpack

from sqlalchemy import Engine

from .. import feedback
from ..config import Guard, Probes
from ..errors import NoHealthyProxy
from ..guard import GuardState, budget_for, service_name
from ..health import HealthPolicy
from ..proxy import Proxy
from ..store import migrate
from ..store._rows import utcnow
from ..store.engine import make_engine, masked_url
from ..store.reports import FeedbackSummary, GuardRail, ReportFacts, feedback_summary, guard_rail, record_report
from ..store.eligibility import LEASE_CLOCK, Eligibility, Filters, LeaseLimits
from ..store.selection import C_ID, HotReads, Shortage, eligible_ids, select_eligible, shortage
from ..store import guard as guard_store
from ..store import worker_leases
from ..store.usage import COUNTED_STRATEGIES, CountedPicks
from .params import FilterKeywords, as_filters, check_limit, check_strategy, proxy_from_reference
from .settings import WorkerSettings, load
from .snapshot import Snapshot
from .why import no_free_proxy, no_healthy_proxy

MAX_PROPOSALS = 64  # proposals re-read per call before falling back to one exact query
RELOAD_FACTOR = 10.0  # rule 5
EMPTY_RECHECK = 0.25  # seconds: an empty snapshot is re-read at most this often before giving up
MAX_WORKER_NAME = 255  # reports.worker is VARCHAR(255): PostgreSQL refuses longer, SQLite would keep it
SMALL_VIEW = 500  # a filter matching at most this many proxies restricts counted picks to them

_POOLS: weakref.WeakSet[ProxyPool] = weakref.WeakSet()
_INHERITED: list[Any] = []  # parents' pools, kept referenced in a forked child (rule 3)


class ProxyPool:
    """Selection and feedback against one database. ``proxycheck.get_healthy_proxy()`` and
    friends use a per-process default pool; make one yourself to pass settings explicitly."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        settings: WorkerSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        check_schema: bool = True,
    ) -> None:
        self._database_url = database_url
        self._config = config
        self._settings_given = settings
        self._clock = clock
        self._check_schema = check_schema
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._pid = os.getpid()
        self._rng = random.Random()
        self._reader: Engine | None = None
        self._hot: HotReads | None = None
        self._writer: Engine | None = None
        self._picks: CountedPicks | None = None
        self._settings = settings or WorkerSettings()
        self._health = HealthPolicy()
        self._sticky_seconds = Probes().sticky_seconds
        self._guard = Guard()
        self._allow_ip_locked = False  # [solver].allow_ip_locked, from the config when it is loaded
        self._url = database_url or ""
        self._snapshot: Snapshot | None = None
        self._worker_name = f"{socket.gethostname()}:{os.getpid()}"
        _POOLS.add(self)

    # -- opening, closing, forking ---------------------------------------------------------------
    @property
    def settings(self) -> WorkerSettings:
        self._open()
        return self._settings

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        self._open()
        return masked_url(self._url)

    def _open(self) -> Engine:
        if self._pid != os.getpid():
            self._after_fork()
        reader = self._reader
        if reader is not None:
            return reader
        with self._lock:
            if self._reader is None:
                settings, worker = load(self._config, database_given=bool(self._database_url))
                url = self._database_url or settings.resolved_database_url
                engine = make_engine(url, writer=False, application_name=f"proxycheck-worker@{socket.gethostname()}")
                try:
                    if self._check_schema:
                        migrate.check_at_head(engine)
                except BaseException:
                    engine.dispose()
                    raise
                self._url, self._health = url, settings.health
                self._sticky_seconds = settings.probes.sticky_seconds
                self._guard = settings.guard
                self._allow_ip_locked = settings.solver.allow_ip_locked
                given = self._settings_given
                self._settings = given.resolved(settings) if isinstance(given, WorkerSettings) else (given or worker)
                self._hot = HotReads(engine)
                self._reader = engine
            return self._reader

    def _write_engine(self) -> Engine:
        self._open()
        writer = self._writer
        if writer is not None:
            return writer
        with self._lock:
            if self._writer is None:
                self._writer = make_engine(self._url, writer=True, application_name=f"proxycheck-worker@{socket.gethostname()}")
                self._picks = CountedPicks(self._writer)
            return self._writer

    def _counted_picks(self) -> CountedPicks:
        self._write_engine()
        assert self._picks is not None
        return self._picks

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._rng = random.Random()
        for engine in (self._reader, self._writer):
            if engine is not None:
                _INHERITED.append(engine.pool)
                engine.dispose(close=False)
        self._pid = os.getpid()
        self._worker_name = f"{socket.gethostname()}:{os.getpid()}"

    def close(self) -> None:
        """Close this process's connections (the pool reopens if used again)."""
        with self._lock:
            for engine in (self._reader, self._writer):
                if engine is not None:
                    engine.dispose()
            self._reader = self._writer = self._hot = self._picks = None
            self._snapshot = None

    def invalidate(self) -> None:
        """Forget the snapshot: the next call re-reads the eligible proxies."""
        self._snapshot = None

    # -- selection ---------------------------------------------------------------------------------
    def get(self, filters: Filters | None = None, *, strategy: str | None = None,
            **keywords: Unpack[FilterKeywords]) -> Proxy:
        """One eligible proxy by ``strategy``; ``NoHealthyProxy`` (a ``LookupError``) says why not.
        ``filters``: a ``Filters``, or its keywords (params.py)."""
        wanted = as_filters(filters, keywords)
        if strategy is not None:  # bad arguments first: a ValueError even with no database
            check_strategy(strategy)
        rule = self._eligibility(wanted)
        reader = self._open()
        strategy = check_strategy(self._settings.strategy if strategy is None else strategy)
        filters = rule.filters
        if strategy in COUNTED_STRATEGIES:
            picks, among = self._counted_picks(), self._among(rule)
            proxy = picks.take(strategy, rule, among)
            if proxy is None and among is not None:
                # The snapshot's ids have all turned ineligible; others matching may have turned
                # eligible since it was read. Only the database itself can say "none" (rule 4).
                proxy = picks.take(strategy, rule)
        elif self._settings.snapshot_seconds > 0 and not filters.needs_full_row and not rule.allow_ip_locked:
            proxy = self._from_snapshot(reader, strategy, rule)
        else:
            proxy = self._from_query(reader, strategy, rule)
        if proxy is None:
            raise self._none_healthy(reader, rule)
        return proxy

    def get_all(self, filters: Filters | None = None, *, strategy: str | None = None, limit: int | None = None,
                **keywords: Unpack[FilterKeywords]) -> list[Proxy]:
        """Every eligible proxy (exact: one query), ordered by ``strategy`` without counting
        hand-outs: fastest first by default, shuffled for ``random``. Empty list, no exception,
        unless the filters name a ``service`` whose error budget is spent (``GuardTripped``)."""
        wanted, limit = as_filters(filters, keywords), check_limit(limit)
        strategy = check_strategy("fastest" if strategy is None else strategy)
        rule = self._eligibility(wanted)
        reader = self._open()
        if strategy == "random":
            proxies = select_eligible(reader, rule, order="id")
            self._rng.shuffle(proxies)
            return proxies[:limit] if limit is not None else proxies
        return select_eligible(reader, rule, order=strategy, limit=limit)

    def _eligibility(self, filters: Filters, leases: bool = False) -> Eligibility:
        """The rule for this call: ``fresh_since`` from the clock once (eligibility.py rule 3), and
        ``[probes].sticky_seconds`` from the config for ``sticky``. Every hand-out comes through
        here, so this is where a service's spent error budget refuses (``GuardTripped``, once per
        call, before any selection: store/guard.py rule 2)."""
        reader = self._open()
        if filters.sticky:
            filters = dataclasses.replace(filters, sticky_seconds=self._sticky_seconds)
        now = self._clock()
        if filters.service is not None:
            guard_store.check(reader, budget_for(self._guard, filters.service), now=now)
        limits = None
        if leases:  # at the lease clock: the database's on PostgreSQL (worker_leases.py rule 5)
            lease_now = LEASE_CLOCK if self._lease_clock() is None else now
            limits = LeaseLimits(self._settings.max_concurrent_per_proxy, lease_now)
        return Eligibility.at(now, self._settings.max_age, filters, limits, allow_ip_locked=self._allow_ip_locked)

    def _none_healthy(self, reader: Engine, rule: Eligibility, counts: Shortage | None = None) -> NoHealthyProxy:
        return no_healthy_proxy(reader, rule, max_age=self._settings.max_age, where=masked_url(self._url),
                                now=self._clock(), counts=counts)

    def _among(self, rule: Eligibility) -> tuple[int, ...] | None:
        """For a counted pick with a selective filter: the ids the snapshot says match, so the
        pick need not walk past every non-matching row (usage.py rule 5). None: walk."""
        filters = rule.filters
        if filters.needs_full_row or rule.allow_ip_locked:  # the snapshot judges freshness by last success
            return None
        if self._settings.snapshot_seconds <= 0 or not (filters.tags or filters.schemes or filters.min_anonymity):
            return None
        snap = self._current_snapshot(rule)
        view = snap.view(filters)
        if not view or len(view) > SMALL_VIEW:
            return None  # empty: the snapshot may be behind, so ask the database itself
        return tuple(c[C_ID] for c in view if c[C_ID] not in snap.discarded) or None

    def _from_query(self, reader: Engine, strategy: str, rule: Eligibility) -> Proxy | None:
        if strategy == "fastest":
            found = select_eligible(reader, rule, order="fastest", limit=1)
            return found[0] if found else None
        for _ in range(3):  # a proxy may turn ineligible between the two reads
            ids = eligible_ids(reader, rule)
            if not ids:
                return None
            proxy = self._hot_reads().fetch(self._rng.choice(ids), rule)
            if proxy is not None:
                return proxy
        return None

    def _from_snapshot(self, reader: Engine, strategy: str, rule: Eligibility) -> Proxy | None:
        hot, filters = self._hot_reads(), rule.filters
        cutoff = hot.cutoff(rule.fresh_since)
        rechecked = False
        for _ in range(MAX_PROPOSALS):
            snap = self._current_snapshot(rule)
            if strategy == "fastest":
                proposal = next(snap.by_latency(filters, cutoff), None)
            else:
                proposal = snap.pick_random(filters, cutoff, self._rng)
            if proposal is None:
                # Nothing in the snapshot: re-read it once (newly healthy proxies) unless it is new.
                if rechecked or time.monotonic() - snap.taken_at < EMPTY_RECHECK:
                    return None
                rechecked = True
                self._reload(rule, blocking=True)
                continue
            proxy = hot.fetch(proposal[C_ID], rule)
            if proxy is not None:
                return proxy
            snap.discard(proposal[C_ID])
        return self._from_query(reader, strategy, rule)

    def _hot_reads(self) -> HotReads:
        self._open()
        assert self._hot is not None
        return self._hot

    def _current_snapshot(self, rule: Eligibility) -> Snapshot:
        snap = self._snapshot
        if snap is None:
            return self._reload(rule, blocking=True)
        age = time.monotonic() - snap.taken_at
        if age >= max(self._settings.snapshot_seconds, RELOAD_FACTOR * snap.load_seconds):
            return self._reload(rule, blocking=False) or snap
        return snap

    def _reload(self, rule: Eligibility, *, blocking: bool) -> Snapshot:
        before = self._snapshot
        if not self._reload_lock.acquire(blocking=blocking):
            return before  # type: ignore[return-value]  # another thread is reloading; keep using ours
        try:
            if self._snapshot is not before and self._snapshot is not None:
                return self._snapshot  # another thread reloaded while we waited
            started = time.monotonic()
            candidates = self._hot_reads().candidates(rule)
            snap = Snapshot(candidates, started, time.monotonic() - started)
            self._snapshot = snap
            return snap
        finally:
            self._reload_lock.release()

    # -- check-out leases (store/worker_leases.py) ---------------------------------------------------
    def acquire(
        self,
        filters: Filters | None = None,
        *,
        ttl: float | None = None,
        worker: str | None = None,
        strategy: str | None = None,
        **keywords: Unpack[FilterKeywords],
    ) -> worker_leases.Lease:
        """Lease one healthy, fresh proxy matching ``filters`` (``get``'s) for ``ttl`` seconds
        (default ``[worker].lease_ttl``), within ``max_concurrent_per_proxy`` and
        ``cooldown_seconds``. ``NoHealthyProxy`` says why none could be leased."""
        wanted, ttl = as_filters(filters, keywords), self._check_ttl(ttl)
        order = check_strategy("least_used" if strategy is None else strategy)
        who = self._who(worker)
        rule = self._eligibility(wanted, leases=True)
        reader = self._open()
        settings = self._settings
        ttl = ttl or settings.lease_ttl
        lease = worker_leases.acquire(
            self._write_engine(), rule, ttl=ttl, cooldown=settings.cooldown_seconds, clock=self._lease_clock(),
            worker=who, order=order,
        )
        if lease is not None:
            return lease
        # Why not: one query says how many match without the lease limits (and, if none, why).
        unleased = dataclasses.replace(rule, leases=None)
        counts = shortage(reader, unleased)
        matching = counts.matching
        where = masked_url(self._url)
        if not matching:
            raise self._none_healthy(reader, unleased, counts)
        assert rule.leases is not None
        held, cooling = worker_leases.lease_counts(reader, now=rule.leases.now)
        wanted = rule.filters
        raise no_free_proxy(
            reader, wanted, matching=matching, held=held, cooling=cooling,
            max_concurrent=settings.max_concurrent_per_proxy, cooldown=settings.cooldown_seconds, where=where,
        )

    def release(self, lease: worker_leases.Lease | str, outcome: Any = None, *, worker: str | None = None,
                service: str | None = None) -> worker_leases.Released:
        """End ``lease`` (a ``Lease`` or its id); with ``outcome``, ``report`` its proxy (for
        ``service``), once: only the release that ends a held lease reports (worker_leases.py
        rule 6). The answer is false when the lease was unknown, had expired or had been released;
        ``.reported`` says whether a report was stored."""
        lease_id = lease.id if isinstance(lease, worker_leases.Lease) else lease
        if not isinstance(lease_id, str) or not lease_id:
            raise ValueError(f"lease: expected a Lease or its id, got {lease!r}")
        proxy: Proxy | str | None = None
        if outcome is not None:
            feedback.classify(outcome)  # a malformed outcome is refused before the lease ends
            proxy = lease.proxy if isinstance(lease, worker_leases.Lease) else worker_leases.proxy_key_of(self._open(), lease_id)
        self._open()
        released = worker_leases.release(
            self._write_engine(), lease_id, cooldown=self._settings.cooldown_seconds, clock=self._lease_clock()
        )
        if not released or proxy is None:
            return worker_leases.Released(released)
        return worker_leases.Released(True, self.report(proxy, outcome, worker=worker, service=service))

    def held_leases(self, limit: int | None = None) -> list[worker_leases.HeldLease]:
        """Leases held now, oldest first."""
        clock = self._lease_clock(self._open())
        return worker_leases.held_leases(self._open(), now=clock and clock(), limit=limit)

    def _lease_clock(self, engine: Engine | None = None) -> Callable[[], datetime] | None:
        """Lease times: the database's clock on PostgreSQL (None), ours on SQLite (worker_leases.py rule 5)."""
        engine = engine or self._write_engine()
        return None if engine.dialect.name == "postgresql" else self._clock

    def report_exception(self, proxy: Proxy | str, exc: BaseException, *, worker: str | None = None,
                         service: str | None = None) -> feedback.ReportResult:
        """Report what an exception inside a lease says: a captcha service's proxy error (its
        response, ``errorCode`` or ``errorId`` found on the exception: ``feedback.outcome_in``)
        as such, anything else as a soft failure naming the exception's type."""
        outcome = feedback.outcome_in(exc)
        if outcome is not None:
            return self.report(proxy, outcome, worker=worker, service=service)
        kind = feedback.Classified("soft_failure", None, None, f"exception {type(exc).__name__}"[:64])
        return self._apply(proxy, kind, worker, service)

    @staticmethod
    def _check_ttl(ttl: float | None) -> float | None:
        if ttl is None:
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 1 <= ttl <= 86400:
            raise ValueError(f"ttl: expected seconds between 1 and 86400, got {ttl!r}")
        return float(ttl)

    def _who(self, worker: str | None) -> str:
        if worker is not None and not isinstance(worker, str):
            raise ValueError(f"worker: expected a name (string), got {type(worker).__name__}")
        return (worker or self._worker_name)[:MAX_WORKER_NAME]

    # -- feedback ---------------------------------------------------------------------------------
    def report(self, proxy: Proxy | str, outcome: Any, *, worker: str | None = None,
               service: str | None = None) -> feedback.ReportResult:
        """Apply what the captcha service said about ``proxy`` (feedback.py, store/reports.py).
        ``service`` names that service: its proxy errors count toward its budget (guard.py)."""
        return self._apply(proxy, feedback.classify(outcome), worker, service)

    def _apply(self, proxy: Proxy | str, c: feedback.Classified, worker: str | None,
               service: str | None = None) -> feedback.ReportResult:
        ref = proxy_from_reference(proxy)
        key, masked = ref.key, ref.masked_url
        who = self._who(worker)
        service = None if service is None else service_name(service)
        if c.kind == "not_about_proxy":
            return feedback.ReportResult(masked, c.kind, c.error, c.code, False, False, False, None, None)
        self._open()
        settings, now = self._settings, self._clock()
        detail = f"{c.error or c.service_code} reported by worker {who}"
        rng = self._rng

        def decide(health: Any, enabled: bool, next_check_at: datetime) -> Any:
            return feedback.decide(
                c.kind, health, enabled, next_check_at, code=c.code, detail=detail, now=now,
                policy=self._health, reprobe_after=settings.reprobe_after, rng=rng,
            )

        facts = ReportFacts(c.kind, c.code, c.error, c.service_code, who, service)
        subnets = guard_store.SubnetRule(self._guard.subnet_errors, self._guard.window)
        done = record_report(self._write_engine(), key, facts, decide, self.guard_rail, now=now, subnets=subnets)
        # No snapshot invalidation needed: every proposal is re-read by id before it is handed out.
        why_not = "unknown_proxy" if not done.found else done.why_not
        return feedback.ReportResult(masked, c.kind, c.error, c.code, done.stored, done.applied, done.took_out, why_not, done.state)

    @property
    def guard_rail(self) -> GuardRail:
        return guard_rail(self.settings)

    def feedback_summary(self) -> FeedbackSummary:
        return feedback_summary(self._open(), self.guard_rail, now=self._clock())

    def guard_state(self, service: str) -> GuardState:
        """``service``'s error budget now (guard.py), as every process on the database sees it."""
        reader = self._open()
        return guard_store.guard_state(reader, budget_for(self._guard, service_name(service)), now=self._clock())


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["ProxyPool"]
