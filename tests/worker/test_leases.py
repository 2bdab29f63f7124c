"""Check-out leases (``proxycheck.lease``): limits across processes, cooldown, expiry, reports."""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta

from sqlalchemy import update
from typing import Any

import pytest

import proxycheck
from proxycheck import NoHealthyProxy
from proxycheck.feedback import outcome_in
from proxycheck.store._rows import utcnow
from proxycheck.store.reports import recent_reports
from proxycheck.worker import ProxyPool, WorkerSettings

from .helpers import fleet, proxy, row

FORK = multiprocessing.get_context("fork")
PROCESSES = 8
LEASES_EACH = 6  # a count, not a time window: a loaded box makes it slower, never different
GIVE_UP = 120.0  # seconds: a process that cannot get its leases by then reports it


def _leaser(url: str, wanted: int, out: Any, start: Any, limit: int = 1) -> None:
    """A worker process: lease, hold briefly, release, ``wanted`` times; log when it held what.
    All start together (``start``, a barrier), so a slow fork cannot leave a process alone."""
    pool = ProxyPool(url, settings=WorkerSettings(max_concurrent_per_proxy=limit))
    pool.held_leases()  # connected and migrated-checked before the start
    start.wait(timeout=GIVE_UP)
    held: list[tuple[str, float, float]] = []
    refused = 0
    errors: list[str] = []
    end = time.time() + GIVE_UP
    while len(held) < wanted:
        if time.time() > end:
            errors.append(f"only {len(held)} of {wanted} leases in {GIVE_UP:g} s")
            break
        try:
            lease = pool.acquire(ttl=60)
        except NoHealthyProxy:
            refused += 1
            time.sleep(0.002)
            continue
        except Exception as exc:  # noqa: BLE001 - the test reports every failure
            errors.append(repr(exc))
            continue
        start = time.time()  # after the lease committed
        time.sleep(0.01)  # "solving"
        stop = time.time()  # before the release commits
        pool.release(lease)
        held.append((lease.proxy.key, start, stop))
    pool.close()
    out.put((held, refused, errors))


def test_eight_processes_never_hold_one_proxy_twice_at_once(migrated_url, writer):
    ps = fleet(writer, [proxy(n) for n in range(1, 4)])  # 3 proxies for 8 processes: contention
    q = FORK.Queue()
    start = FORK.Barrier(PROCESSES)
    procs = [FORK.Process(target=_leaser, args=(migrated_url, LEASES_EACH, q, start)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [q.get(timeout=GIVE_UP + 60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    errors = [e for _, _, errs in results for e in errs]
    assert errors == []
    held = sorted((iv for h, _, _ in results for iv in h), key=lambda iv: (iv[0], iv[1]))
    refused = sum(r for _, r, _ in results)
    assert len(held) == PROCESSES * LEASES_EACH
    # Real contention: some acquire found all 3 proxies taken, or at some moment all 3 were held at
    # once (with acquirers waiting for a locked proxy instead of refusing, refusals can be rare).
    assert refused > 0 or _peak(held) == len(ps), (refused, _peak(held))
    assert {k for k, _, _ in held} == {p.key for p in ps}
    overlaps = [(a, b) for a, b in zip(held, held[1:]) if a[0] == b[0] and b[1] < a[2]]
    assert overlaps == [], f"a proxy was held twice at once: {overlaps[:3]}"


def _peak(held: list[tuple[str, float, float]]) -> int:
    """The most of these (key, start, stop) leases held at one instant."""
    edges = sorted([(s, 1) for _, s, _ in held] + [(e, -1) for _, _, e in held])
    now = top = 0
    for _, step in edges:
        now += step
        top = max(top, now)
    return top


def _most_held_at_once(held: list[tuple[str, float, float]]) -> dict[str, int]:
    """Per proxy, the most leases held at one instant (from the logged intervals)."""
    return {key: _peak([iv for iv in held if iv[0] == key]) for key in {k for k, _, _ in held}}


@pytest.mark.parametrize("n_proxies, limit", [(1, 100), (3, 10)])
def test_every_acquire_with_a_free_slot_gets_it(migrated_url, writer, n_proxies, limit):
    """8 processes never hold more than 8 leases, fewer than the slots: every acquire must get
    one (PostgreSQL's SKIP LOCKED must not turn "another acquirer holds the row" into "none free")."""
    ps = fleet(writer, [proxy(n) for n in range(1, n_proxies + 1)])
    q = FORK.Queue()
    start = FORK.Barrier(PROCESSES)
    procs = [FORK.Process(target=_leaser, args=(migrated_url, LEASES_EACH, q, start, limit)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [q.get(timeout=GIVE_UP + 60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    held = [iv for h, _, _ in results for iv in h]
    refused = sum(r for _, r, _ in results)
    counts = f"{len(held)} leases granted, {refused} refused"
    assert [e for _, _, errs in results for e in errs] == [], counts
    assert (len(held), refused) == (PROCESSES * LEASES_EACH, 0), counts
    assert {k for k, _, _ in held} <= {p.key for p in ps}
    assert max(_most_held_at_once(held).values()) <= limit


# The pool's clock sets lease times on SQLite only: PostgreSQL's are the database's (worker_leases.py
# rule 5; test_lease_times_are_the_databases_on_postgresql), so time travel goes through the store there.
SQLITE_CLOCK = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize("cooldown", [0, 30])
def test_expiry_and_cooldown_on_the_lease_clock(writer, cooldown):
    """The store's rules on a given clock, on both databases: held until ``expires_at``, then
    cooling for ``cooldown`` seconds (none at all with 0)."""
    from proxycheck.store import worker_leases as wl
    from proxycheck.store.eligibility import Eligibility, LeaseLimits

    (p,) = fleet(writer, [proxy(1)])
    t0 = utcnow()
    at = [t0]

    def take() -> Any:
        rule = Eligibility.at(t0, 86400, leases=LeaseLimits(max_concurrent=1, now=t0))  # now: the clock's, below
        return wl.acquire(writer, rule, ttl=60, cooldown=cooldown, clock=lambda: at[0])

    first = take()
    assert first.proxy == p and (first.acquired_at, first.expires_at) == (t0, t0 + timedelta(seconds=60))
    at[0] = t0 + timedelta(seconds=59)
    assert take() is None and wl.lease_counts(writer, now=at[0]) == (1, 0)
    at[0] = t0 + timedelta(seconds=61)  # expired: free, or cooling until 90
    assert wl.lease_counts(writer, now=at[0]) == (0, 1 if cooldown else 0)
    second = take()
    assert (second is None) == bool(cooldown)
    if cooldown:
        at[0] = t0 + timedelta(seconds=91)
        second = take()
    assert second.proxy == p
    assert not wl.release(writer, first.id, cooldown=cooldown, clock=lambda: at[0])  # it freed itself
    assert wl.release(writer, second.id, cooldown=cooldown, clock=lambda: at[0])
    assert (take() is None) == bool(cooldown)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_lease_times_are_the_databases_on_postgresql(make_pool, writer):
    """A worker whose clock is 90 s fast neither takes a lease another worker holds nor sees it
    expired: on PostgreSQL lease times come from the database's clock."""
    (p,) = fleet(writer, [proxy(1)])
    fast = make_pool(max_concurrent_per_proxy=1, clock=lambda: utcnow() + timedelta(seconds=90))
    on_time = make_pool(max_concurrent_per_proxy=1)
    held = on_time.acquire(ttl=60, worker="on-time")
    with pytest.raises(NoHealthyProxy, match=r"1 lease held"):
        fast.acquire(ttl=60, worker="fast")
    assert [h.worker for h in fast.held_leases()] == ["on-time"]
    assert on_time.release(held)
    mine = fast.acquire(ttl=60, worker="fast")  # and the fast worker's own lease lasts its 60 s
    assert mine.proxy == p and 59 < (mine.expires_at - mine.acquired_at).total_seconds() <= 60
    assert abs((mine.acquired_at - utcnow()).total_seconds()) < 30  # the database's time, not the fast clock
    with pytest.raises(NoHealthyProxy):
        on_time.acquire(ttl=60)


def test_release_reports_once_per_lease(make_pool, writer):
    """Releasing with an outcome reports only when it ends the lease; the answer says so."""
    fleet(writer, [proxy(1), proxy(2)])  # the report takes one out; the other is leased after
    pool = make_pool()
    lease = pool.acquire(ttl=60)
    first = pool.release(lease, "ERROR_PROXY_READ_TIMEOUT")
    assert first and first.reported and first.report.kind == "proxy_error"
    for again in (pool.release(lease, "ERROR_PROXY_READ_TIMEOUT"), pool.release(lease.id, "ERROR_PROXY_READ_TIMEOUT")):
        assert (again.released, again.reported, again.report) == (False, False, None)
    unknown = pool.release("no-such-lease", "ERROR_PROXY_BANNED")
    assert (bool(unknown), unknown.reported) == (False, False)
    assert len(recent_reports(writer)) == 1
    with pytest.raises(ValueError, match="outcome"):
        pool.release(pool.acquire(ttl=60), True)  # refused before the lease ends
    assert len(pool.held_leases()) == 1


def test_max_concurrent_per_proxy_allows_that_many(make_pool, writer):
    (p,) = fleet(writer, [proxy(1)])
    pool = make_pool(max_concurrent_per_proxy=2)
    a, b = pool.acquire(), pool.acquire()
    assert a.proxy == b.proxy == p and a.id != b.id
    with pytest.raises(NoHealthyProxy, match=r"max_concurrent_per_proxy = 2\) .*2 leases held"):
        pool.acquire()
    assert pool.release(a)
    assert pool.acquire().proxy == p


@SQLITE_CLOCK
def test_cooldown_is_respected(make_pool, writer):
    ps = fleet(writer, [proxy(1), proxy(2)])
    t0 = utcnow()
    clock = [t0]
    pool = make_pool(cooldown_seconds=30, max_age=86400, clock=lambda: clock[0])
    first, second = pool.acquire(), pool.acquire()
    assert {first.proxy, second.proxy} == set(ps)
    assert pool.release(first)
    clock[0] = t0 + timedelta(seconds=29)
    with pytest.raises(NoHealthyProxy, match=r"cooling down \(\[worker\].cooldown_seconds = 30\).* 1 lease held and 1 proxy cooling"):
        pool.acquire()
    clock[0] = t0 + timedelta(seconds=31)
    assert pool.acquire().proxy == first.proxy
    assert pool.release(second)  # then second's proxy cools from its release, not its acquire
    clock[0] = t0 + timedelta(seconds=60)
    with pytest.raises(NoHealthyProxy):
        pool.acquire()
    clock[0] = t0 + timedelta(seconds=62)
    assert pool.acquire().proxy == second.proxy


@SQLITE_CLOCK
def test_an_expired_lease_frees_itself(make_pool, writer):
    (p,) = fleet(writer, [proxy(1)])
    t0 = utcnow()
    clock = [t0]
    pool = make_pool(max_age=86400, clock=lambda: clock[0])
    lost = pool.acquire(ttl=60, worker="killed")  # the worker dies without releasing
    assert [h.worker for h in pool.held_leases()] == ["killed"]
    clock[0] = t0 + timedelta(seconds=59)
    with pytest.raises(NoHealthyProxy, match="no proxy free to lease"):
        pool.acquire()
    clock[0] = t0 + timedelta(seconds=61)
    assert pool.held_leases() == []
    again = pool.acquire(ttl=60)
    assert again.proxy == p
    assert not pool.release(lost)  # too late: it had freed itself
    assert pool.release(again) and not pool.release(again)


def test_no_healthy_proxy_is_not_blamed_on_leases(make_pool, writer):
    fleet(writer, [proxy(1)], healthy=False)
    with pytest.raises(NoHealthyProxy, match=r"^no healthy proxy; 1 enabled proxies"):
        make_pool().acquire()


def test_lease_passes_the_filters_through_and_counts_the_hand_out(migrated_url, writer):
    ps = fleet(writer, [proxy(1, tags={"us"}), proxy(2, tags={"de"})])
    proxycheck.configure(migrated_url)
    with proxycheck.lease(tags={"de"}, ttl=30) as got:
        assert got == ps[1] and got.password == "pw"
        with pytest.raises(NoHealthyProxy, match="matching tags"):
            proxycheck.acquire(tags="de")
        assert [h.proxy_key for h in proxycheck.worker.held_leases()] == [ps[1].key]
    assert proxycheck.worker.held_leases() == []
    assert row(writer, ps[1]).use_count == 1
    with pytest.raises(TypeError):
        proxycheck.acquire(colour="red")
    with pytest.raises(ValueError, match="ttl"):
        proxycheck.acquire(ttl=0)


def test_an_exception_in_the_block_is_a_soft_failure(migrated_url, writer):
    (p,) = fleet(writer, [proxy(1)])
    proxycheck.configure(migrated_url)
    with pytest.raises(TimeoutError), proxycheck.lease():
        raise TimeoutError("the solve took too long")
    (r,) = recent_reports(writer)
    assert (r.kind, r.service_code, r.applied, r.took_out) == ("soft_failure", "exception TimeoutError", True, False)
    assert row(writer, p).consecutive_failures == 1 and row(writer, p).state == "healthy"
    assert proxycheck.worker.held_leases() == []


class CaptchaError(Exception):
    """As python-anticaptcha raises it: AnticaptchaException(error_id, error_code, description)."""

    def __init__(self, error_id: int, error_code: str, description: str) -> None:
        super().__init__(error_id, error_code, description)
        self.error_id, self.error_code = error_id, error_code


def test_a_captcha_services_proxy_error_is_reported_as_such(migrated_url, writer):
    (p,) = fleet(writer, [proxy(1)])
    proxycheck.configure(migrated_url)
    with pytest.raises(CaptchaError), proxycheck.lease():
        raise CaptchaError(29, "ERROR_PROXY_TRANSPARENT", "the proxy is transparent")
    (r,) = recent_reports(writer)
    assert (r.kind, r.code, r.error, r.took_out) == ("proxy_error", 29, "ERROR_PROXY_TRANSPARENT", True)
    assert row(writer, p).state == "unhealthy"


def test_interrupts_are_not_the_proxys_fault(migrated_url, writer):
    fleet(writer, [proxy(1)])
    proxycheck.configure(migrated_url)
    with pytest.raises(KeyboardInterrupt), proxycheck.lease():
        raise KeyboardInterrupt
    assert recent_reports(writer) == [] and proxycheck.worker.held_leases() == []


@pytest.mark.parametrize(
    "exc, found",
    [
        (RuntimeError("createTask failed: ERROR_PROXY_BANNED"), "ERROR_PROXY_BANNED"),
        (RuntimeError({"errorId": 1, "errorCode": "ERROR_PROXY_CONNECT_REFUSED"}), {"errorId": 1, "errorCode": "ERROR_PROXY_CONNECT_REFUSED"}),
        (CaptchaError(52, "ERROR_FAILED_LOADING_WIDGET", "widget"), "ERROR_FAILED_LOADING_WIDGET"),
        (OSError(28, "No space left on device"), None),  # an errno, not errorId 28
        (ValueError("bad input"), None),
        (RuntimeError("ERROR_ZERO_BALANCE"), None),  # about the account, not the proxy
    ],
)
def test_outcome_in(exc, found):
    assert outcome_in(exc) == found


def test_outcome_in_follows_the_cause():
    try:
        try:
            raise RuntimeError("ERROR_PROXY_READ_TIMEOUT")
        except RuntimeError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as exc:
        assert outcome_in(exc) == "ERROR_PROXY_READ_TIMEOUT"


async def test_async_twins(migrated_url, writer):
    ps = fleet(writer, [proxy(1), proxy(2)])
    proxycheck.configure(migrated_url)
    async with proxycheck.alease(ttl=30) as got:
        assert got in ps
        other = await proxycheck.aacquire()
        assert other.proxy in ps and other.proxy != got
        assert await proxycheck.arelease(other)
    assert proxycheck.worker.held_leases() == []


def test_status_shows_the_leases_held(make_pool, writer):
    from rich.console import Console

    from proxycheck.status_view import as_json, render
    from proxycheck.store import list_proxies, status_summary
    from proxycheck.store.worker_leases import lease_summary

    (p,) = fleet(writer, [proxy(1)])
    make_pool().acquire(worker="w1", ttl=120)
    leases = lease_summary(writer, now=utcnow())
    shaped = as_json(status_summary(writer), list_proxies(writer), None, leases=leases)["summary"]["leases"]
    assert (shaped["held"], shaped["cooling"], shaped["list"][0]["proxy"], shaped["list"][0]["worker"]) == (1, 0, p.key, "w1")
    console = Console(record=True, width=200)
    render(status_summary(writer), list_proxies(writer), console, None, leases=leases)
    text = console.export_text()
    assert "worker leases: 1 held, 0 proxies cooling down" in text and f"{p.key} leased by w1" in text
    assert "pw@" not in text and "pw@" not in str(shaped)


def test_lease_takes_the_target_filter(make_pool, writer):
    """A proxy banned by hCaptcha only (as the ban probe records it) is leased for reCAPTCHA,
    refused for hCaptcha: lease() goes through the one eligibility rule (store/selection.py)."""
    from sqlalchemy import update

    from proxycheck.store.models import ProxyRow

    (p,) = fleet(writer, [proxy(1)])
    with writer.begin() as conn:
        conn.execute(update(ProxyRow).values(state="unhealthy", code=28, reason="banned", banned_on=["hcaptcha"],
                                             usable_for=["recaptcha"], usable_at=utcnow()))
    pool = make_pool()
    with pytest.raises(NoHealthyProxy):
        pool.acquire()  # not healthy: only target-aware hand-outs may take it
    with pytest.raises(NoHealthyProxy):
        pool.acquire(target="hcaptcha")
    held = pool.acquire(target="recaptcha", sticky=False)
    assert held.proxy == p


@pytest.mark.postgres
def test_a_repeatable_read_database_default_does_not_leak_in(pg_database):
    """The engine asks for READ COMMITTED (engine.py rule 6): with the database's default at
    REPEATABLE READ, an acquirer that waited for a row lock would get a raw SerializationFailure."""
    import threading

    from pgdb import admin_engine, throwaway_database
    from sqlalchemy import make_url, text

    from proxycheck.store import make_engine, migrate
    from proxycheck.store.models import ProxyRow

    with throwaway_database("proxycheck_rr") as url:
        admin = admin_engine()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{make_url(url).database}" '
                              "SET default_transaction_isolation = 'repeatable read'"))
        admin.dispose()
        migrate.upgrade(url)
        writer = make_engine(url, writer=True)
        try:
            fleet(writer, [proxy(1)])
            pool = ProxyPool(url, settings=WorkerSettings(max_concurrent_per_proxy=10))
            got: list[Any] = []
            with writer.connect() as other:  # another acquirer, mid-transaction, holds the row
                other.execute(update(ProxyRow).values(use_count=ProxyRow.use_count + 1))
                waiter = threading.Thread(target=lambda: got.append(_outcome(pool.acquire)))
                waiter.start()
                with writer.connect() as watch:  # until the acquirer waits for that row lock
                    while not watch.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                                "AND datname = current_database()")):
                        watch.rollback()  # pg_stat_activity is read once per transaction
                        time.sleep(0.01)
                other.commit()
                waiter.join(timeout=60)
            assert len(got) == 1 and not isinstance(got[0], Exception), got  # not a SerializationFailure
            assert got[0].proxy == proxy(1)
            pool.close()
            with writer.connect() as conn:
                assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
        finally:
            writer.dispose()


def _outcome(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the test shows what the acquirer got
        return exc


@pytest.mark.parametrize("healthy", [True, False])
def test_a_refused_lease_applies_the_rule_in_two_statements(make_pool, writer, healthy):
    """The pick, then one statement that says how many match and why (selection.shortage);
    before: the pick, the ids again, and the counts again when none was healthy. A statement
    applies the rule when it holds its freshness term."""
    from sqlalchemy import event

    fleet(writer, [proxy(1)], healthy=healthy)
    pool = make_pool(max_concurrent_per_proxy=1)
    if healthy:
        pool.acquire(ttl=60)  # the one slot
    pool._write_engine()
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        if "last_success_at >=" in statement:
            seen.append(statement)

    for engine in (pool._reader, pool._writer):
        event.listen(engine, "before_cursor_execute", count)
    with pytest.raises(NoHealthyProxy, match="no proxy free to lease" if healthy else "no healthy proxy"):
        pool.acquire(ttl=60)
    assert len(seen) == 2, "\n\n".join(seen)
