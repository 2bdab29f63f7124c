"""Each proxy's latest result per probe: stored by the fenced write-back, read by the claim."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import update

from proxycheck.result import ProbeOutcome
from proxycheck.store import add_proxies, claim_due, record_result
from proxycheck.store.models import ProxyRow
from proxycheck.store.probe_results import ran_at_of

from .helpers import NOW, outcome, proxy


def _claim(engine, at):
    with engine.begin() as conn:
        conn.execute(update(ProxyRow).values(next_check_at=at, lease_expires_at=None))
    (claim,) = claim_due(engine, "test", 10, 60, now=at)
    return claim


def test_what_ran_is_stored_and_the_next_claim_carries_it(writer):
    add_proxies(writer, [proxy(1)])
    first = _claim(writer, NOW)
    assert first.last_probes == {}
    claim, result, t = outcome(first, True)
    assert record_result(writer, claim, result, t, "test")

    second = _claim(writer, NOW + timedelta(seconds=300))
    assert {n: r.ran_at for n, r in second.last_probes.items()} == {"connect": NOW, "anonymity": NOW}
    assert second.last_probes["anonymity"].outcome.ok and second.last_probes["anonymity"].outcome.elapsed_ms == 120.0

    # This check ran connect and carried anonymity: only connect's time moves.
    later = NOW + timedelta(seconds=300)
    claim, result, t = outcome(second, True, at=later)
    carried = dataclasses.replace(result.probes[1], carried=True, age_s=300.0)
    result = dataclasses.replace(result, probes=(result.probes[0], carried))
    assert record_result(writer, claim, result, t, "test")
    with writer.begin() as conn:
        assert ran_at_of(conn, claim.proxy_id) == {"connect": later, "anonymity": NOW}


def test_a_lost_lease_stores_no_probe_result(writer):
    add_proxies(writer, [proxy(1)])
    stale = _claim(writer, NOW)
    _claim(writer, NOW + timedelta(seconds=120))  # lease expired and taken over
    claim, result, t = outcome(stale, False, code=25, reason="connect_refused")
    assert not record_result(writer, claim, result, t, "test")
    with writer.begin() as conn:
        assert ran_at_of(conn, claim.proxy_id) == {}


def test_a_failure_is_stored_with_its_verdict(writer):
    add_proxies(writer, [proxy(1)])
    claim, result, t = outcome(_claim(writer, NOW), False, code=25, reason="connect_refused")
    assert record_result(writer, claim, result, t, "test")
    last = _claim(writer, NOW + timedelta(seconds=60)).last_probes["connect"].outcome
    assert (last.ok, last.code, last.reason, last.detail) == (False, 25, "connect_refused", "connect_refused detail")
    assert isinstance(last, ProbeOutcome) and not last.carried


def test_a_proxy_out_on_a_worker_report_is_re_probed_in_full(writer):
    from proxycheck.feedback import WORKER_REPORT
    from proxycheck.store.probe_results import WORKER_REPORT as STORE_WORKER_REPORT

    assert STORE_WORKER_REPORT == WORKER_REPORT
    add_proxies(writer, [proxy(1)])
    claim, result, t = outcome(_claim(writer, NOW), True)
    assert record_result(writer, claim, result, t, "test")
    with writer.begin() as conn:  # a worker reported ERROR_PROXY_BANNED (feedback.decide's write)
        conn.execute(update(ProxyRow).values(state="unhealthy", code=28, reason=WORKER_REPORT))
    assert _claim(writer, NOW + timedelta(seconds=60)).last_probes == {}  # every probe runs
    with writer.begin() as conn:
        conn.execute(update(ProxyRow).values(state="healthy", code=None, reason=None))
    assert set(_claim(writer, NOW + timedelta(seconds=120)).last_probes) == {"connect", "anonymity"}
