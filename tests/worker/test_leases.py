"""Check-out leases (``proxycheck.lease``): limits across processes, cooldown, expiry, reports."""

from __future__ import annotations

import multiprocessing
import time
from datetime import timedelta
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


def _leaser(url: str, wanted: int, out: Any) -> None:
    """A worker process: lease, hold briefly, release, ``wanted`` times; log when it held what."""
    pool = ProxyPool(url, settings=WorkerSettings(max_concurrent_per_proxy=1))
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
    procs = [FORK.Process(target=_leaser, args=(migrated_url, LEASES_EACH, q)) for _ in range(PROCESSES)]
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
    assert refused > 0  # real contention: some acquires found all 3 proxies taken
    assert {k for k, _, _ in held} == {p.key for p in ps}
    overlaps = [(a, b) for a, b in zip(held, held[1:]) if a[0] == b[0] and b[1] < a[2]]
    assert overlaps == [], f"a proxy was held twice at once: {overlaps[:3]}"


def test_max_concurrent_per_proxy_allows_that_many(make_pool, writer):
    (p,) = fleet(writer, [proxy(1)])
    pool = make_pool(max_concurrent_per_proxy=2)
    a, b = pool.acquire(), pool.acquire()
    assert a.proxy == b.proxy == p and a.id != b.id
    with pytest.raises(NoHealthyProxy, match=r"max_concurrent_per_proxy = 2\) .*2 leases held"):
        pool.acquire()
    assert pool.release(a)
    assert pool.acquire().proxy == p


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
