"""Feedback: the captcha services' codes, what a report does, the guard rail, the daemon's lease."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest

from proxycheck import NoHealthyProxy
from proxycheck.feedback import classify, decide
from proxycheck.health import HealthPolicy, HealthState, advance
from proxycheck.store import claim_due, record_result, release_claims
from proxycheck.store._rows import utcnow
from proxycheck.store.reports import feedback_summary, recent_reports

from .helpers import check, fleet, proxy, row, verdict

T0 = utcnow()


@pytest.mark.parametrize(
    ("outcome", "kind", "error", "code"),
    [
        # anti-captcha: the response, a bare errorId, a bare errorCode
        ({"errorId": 28, "errorCode": "ERROR_PROXY_BANNED", "errorDescription": "..."}, "proxy_error", "ERROR_PROXY_BANNED", 28),
        (25, "proxy_error", "ERROR_PROXY_CONNECT_REFUSED", 25),
        ("26", "proxy_error", "ERROR_PROXY_CONNECT_TIMEOUT", 26),
        ({"errorId": 27}, "proxy_error", "ERROR_PROXY_READ_TIMEOUT", 27),
        ("ERROR_PROXY_TRANSPARENT", "proxy_error", "ERROR_PROXY_TRANSPARENT", 29),
        (35, "proxy_error", "ERROR_PROXY_HAS_NO_IMAGE_SUPPORT", 35),
        ("error_proxy_incompatible_http_version", "proxy_error", "ERROR_PROXY_INCOMPATIBLE_HTTP_VERSION", 36),
        ("PROXY_NOT_AUTHORISED", "proxy_error", "ERROR_PROXY_NOT_AUTHORISED", 49),
        # CapMonster Cloud: errorId 1 for every error, the name decides
        ({"errorId": 1, "errorCode": "ERROR_PROXY_CONNECT_REFUSED"}, "proxy_error", "ERROR_PROXY_CONNECT_REFUSED", 25),
        ({"errorId": 1, "errorCode": "ERROR_PROXY_BANNED"}, "proxy_error", "ERROR_PROXY_BANNED", 28),
        ({"errorId": 1, "errorCode": "ERROR_KEY_DOES_NOT_EXIST"}, "not_about_proxy", "ERROR_KEY_DOES_NOT_EXIST", None),
        # 2captcha: v2 error 130, v1 res.php / in.php strings (catch-alls: no finer code)
        ({"errorId": 130, "errorCode": "ERROR_BAD_PROXY"}, "proxy_error", "ERROR_BAD_PROXY", None),
        (130, "proxy_error", "ERROR_BAD_PROXY", None),
        ({"status": 0, "request": "ERROR_PROXY_CONNECTION_FAILED"}, "proxy_error", "ERROR_PROXY_CONNECTION_FAILED", None),
        ("ERROR_BAD_PROXY", "proxy_error", "ERROR_BAD_PROXY", None),
        ({"status": 0, "request": "ERROR_PROXY_FORMAT"}, "not_about_proxy", "ERROR_PROXY_FORMAT", None),
        ({"status": 1, "request": "03AGdBq24PBCbwiDRaS_MJ7Z..."}, "success", None, None),  # res.php: the token
        ({"status": 1, "request": "2122988149"}, "not_about_proxy", None, None),  # in.php: only a task id
        # soft failures
        ({"errorId": 30, "errorCode": "ERROR_RECAPTCHA_TIMEOUT"}, "soft_failure", "ERROR_RECAPTCHA_TIMEOUT", None),
        (52, "soft_failure", "ERROR_FAILED_LOADING_WIDGET", None),
        # success
        ({"errorId": 0, "taskId": 7654321}, "not_about_proxy", None, None),  # createTask: accepted, not solved
        ({"errorId": 0, "status": "processing"}, "not_about_proxy", None, None),
        ({"errorId": 0, "status": "ready", "solution": {"gRecaptchaResponse": "3AHJ..."}}, "success", None, None),
        (0, "success", None, None),
        # not about the proxy
        (10, "not_about_proxy", None, None),  # ERROR_ZERO_BALANCE: not in the table, by id
        ("ERROR_ZERO_BALANCE", "not_about_proxy", "ERROR_ZERO_BALANCE", None),
        ({"errorId": 31, "errorCode": "ERROR_RECAPTCHA_INVALID_SITEKEY"}, "not_about_proxy", "ERROR_RECAPTCHA_INVALID_SITEKEY", None),
        (999, "not_about_proxy", None, None),
    ],
)
def test_classify(outcome, kind, error, code):
    c = classify(outcome)
    assert (c.kind, c.error, c.code) == (kind, error, code)


@pytest.mark.parametrize("outcome", [None, True, 2.5, {"result": "ok"}, {"errorId": "x"}, [28]])
def test_classify_refuses_what_is_not_a_service_answer(outcome):
    with pytest.raises(ValueError):
        classify(outcome)


HEALTHY = HealthState("healthy", consecutive_successes=5)
STREAK = HealthState("healthy", consecutive_successes=0, consecutive_failures=2, reason="worker_report")
LATER = T0 + timedelta(seconds=300)


@pytest.mark.parametrize(
    ("kind", "health", "enabled", "applied", "why_not", "state", "takes_out", "next_in"),
    [
        ("proxy_error", HEALTHY, True, True, None, "unhealthy", True, 15),
        ("proxy_error", HealthState("unhealthy", code=26), True, False, "not_healthy", None, False, None),
        ("proxy_error", HealthState("unknown"), True, False, "not_healthy", None, False, None),
        ("proxy_error", HEALTHY, False, False, "disabled", None, False, None),
        ("soft_failure", HEALTHY, True, True, None, "healthy", False, 30),  # fast_interval (no jitter below)
        ("soft_failure", STREAK, True, True, None, "unhealthy", True, 15),  # third in a row: fall
        ("success", STREAK, True, True, None, "healthy", False, None),  # streak zeroed
        ("success", HEALTHY, True, False, "no_change", None, False, None),
        ("success", HealthState("unhealthy", code=26), True, False, "not_healthy", None, False, None),
    ],
)
def test_decide(kind, health, enabled, applied, why_not, state, takes_out, next_in):
    d = decide(
        kind, health, enabled, LATER, code=28, detail="d", now=T0,
        policy=HealthPolicy(jitter=0), reprobe_after=15, rng=random.Random(0),
    )
    assert (d.applied, d.why_not, d.takes_out) == (applied, why_not, takes_out)
    assert (d.state.state if d.state else None) == state
    assert d.next_check_at == (None if next_in is None else T0 + timedelta(seconds=next_in))
    if kind == "success" and applied:
        assert (d.state.consecutive_failures, d.state.reason) == (0, None)


def test_a_proxy_error_takes_the_proxy_out_at_once_and_a_re_probe_brings_it_back(make_pool, writer):
    ps = fleet(writer, [proxy(n) for n in range(1, 11)])
    pool = make_pool(snapshot_seconds=3600)
    bad = pool.get()
    result = pool.report(bad, {"errorId": 28, "errorCode": "ERROR_PROXY_BANNED"}, worker="w1")
    assert (result.kind, result.code, result.applied, result.took_out, result.state) == ("proxy_error", 28, True, True, "unhealthy")
    assert bad not in {pool.get() for _ in range(200)}
    assert bad not in pool.get_all()
    r = row(writer, bad)
    assert (r.state, r.code, r.reason) == ("unhealthy", 28, "worker_report")
    assert "ERROR_PROXY_BANNED reported by worker w1" in r.detail
    assert r.next_check_at <= utcnow() + timedelta(seconds=15)
    # The daemon re-probes it when due (claim_due picks it at next_check_at), twice (rise = 2).
    soon = r.next_check_at + timedelta(seconds=1)
    due = claim_due(writer, "probe", 100, 60, now=soon)
    assert [c.proxy for c in due] == [bad]  # the others' next checks are minutes away
    release_claims(writer, due)
    check(writer, {bad: True}, at=soon)
    assert bad not in {pool.get() for _ in range(100)}
    check(writer, {bad: True}, at=soon + timedelta(seconds=30))
    pool.invalidate()
    assert bad in {pool.get() for _ in range(300)}
    assert len(ps) == 10


def test_soft_failures_count_toward_fall_and_success_resets_them(make_pool, writer):
    (p,) = fleet(writer, [proxy(1)])
    pool = make_pool()
    for _ in range(2):
        assert pool.report(p, "ERROR_RECAPTCHA_TIMEOUT").state == "healthy"
    assert pool.report(p, {"errorId": 0, "solution": {}}).applied  # streak zeroed
    assert row(writer, p).consecutive_failures == 0
    assert [pool.report(p, 52).state for _ in range(3)] == ["healthy", "healthy", "unhealthy"]
    with pytest.raises(NoHealthyProxy, match=r"1 unhealthy \(no code x1\)"):
        pool.get()


def test_what_is_stored(make_pool, writer):
    (p,) = fleet(writer, [proxy(1)])
    pool = make_pool()
    assert not pool.report(p, "ERROR_ZERO_BALANCE").stored  # not about the proxy
    assert not pool.report(p, 0).stored  # a success that changes nothing
    unknown = pool.report(proxy(99), 28)
    assert (unknown.stored, unknown.why_not, unknown.state) == (False, "unknown_proxy", None)
    pool.report(p.url, 26, worker="w7")  # by URL
    pool.report(p.key, 25, worker="w8")  # by key: already unhealthy, stored, not applied
    reports = recent_reports(writer)
    assert [(r.worker, r.code, r.applied, r.why_not) for r in reports] == [("w8", 25, False, "not_healthy"), ("w7", 26, True, None)]
    assert reports[0].proxy_key == p.key and "pw" not in reports[0].proxy_key


def test_the_guard_rail_caps_what_reports_alone_can_take_out(make_pool, writer):
    ps = fleet(writer, [proxy(n) for n in range(1, 21)])
    t0 = utcnow()
    clock = [t0]
    pool = make_pool(max_reported_percent=10, report_window=300, clock=lambda: clock[0])
    results = [pool.report(p, 25, worker="buggy") for p in ps[:5]]  # a buggy worker blames everyone
    assert [r.applied for r in results] == [True, True, False, False, False]  # 10 % of 20 = 2
    assert {r.why_not for r in results[2:]} == {"guard_rail"}
    assert len(pool.get_all()) == 18
    summary = pool.feedback_summary()
    assert (summary.reports, summary.applied, summary.took_out, summary.held_back, summary.budget) == (5, 2, 2, 3, 2)
    assert summary.holding and summary.at_limit and summary.out_now == 2
    assert "GUARD RAIL HOLDING: 3 reports not applied" in summary.line()
    clock[0] = t0 + timedelta(seconds=301)  # the window moves on
    assert pool.report(ps[10], 25).applied
    assert not feedback_summary(writer, pool.guard_rail, now=clock[0]).holding


def test_the_guard_rail_allows_one_proxy_of_a_small_pool(make_pool, writer):
    ps = fleet(writer, [proxy(1), proxy(2), proxy(3)])
    pool = make_pool()
    assert [pool.report(p, 28).applied for p in ps] == [True, False, False]


def test_the_guard_rail_holds_under_concurrent_reporters(make_pool, writer):
    ps = fleet(writer, [proxy(n) for n in range(1, 31)])  # budget 3
    pools = [make_pool() for _ in range(6)]
    results = []
    barrier = threading.Barrier(len(pools))

    def blame(pool, mine):
        barrier.wait()
        results.extend(pool.report(p, 26).applied for p in mine)

    threads = [threading.Thread(target=blame, args=(pool, ps[i::6])) for i, pool in enumerate(pools)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 3 and len(results) == 30
    assert len(pools[0].get_all()) == 27


def test_a_report_does_not_break_the_daemons_lease_and_the_daemon_has_the_last_word(make_pool, writer):
    (p,) = fleet(writer, [proxy(1)])
    now = utcnow()
    (claim,) = claim_due(writer, "daemon", 10, 60, now=now + timedelta(days=1))  # a check in flight
    pool = make_pool()
    assert pool.report(p, 28).took_out  # lands while the daemon holds the lease
    assert row(writer, p).lease_token == claim.lease_token  # the lease is untouched
    # The daemon writes back its (passing) check, fenced by its token: it succeeds, and wins.
    t = advance(claim.state, healthy=True, code=None, reason=None, now=now, policy=HealthPolicy(), rng=random.Random(1))
    assert record_result(writer, claim, verdict(p, True, now), t, "daemon")
    assert row(writer, p).state == "healthy"
    assert pool.get() == p
