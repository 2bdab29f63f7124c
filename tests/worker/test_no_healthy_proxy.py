"""``NoHealthyProxy`` says why: counts by state and code, staleness, filters, the checker."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from proxycheck import NoHealthyProxy
from proxycheck.store import heartbeat, register_instance, sync_source
from proxycheck.store._rows import utcnow
from proxycheck.store.selection import Filters, Shortage
from proxycheck.worker.why import explain

from .helpers import check, fleet, proxy

NONE = Shortage(enabled=0, disabled=0, fresh=0, stale=0, unhealthy=0, unknown=0, codes=())
MIXED = Shortage(enabled=9, disabled=1, fresh=2, stale=3, unhealthy=3, unknown=1, codes=((26, 2), (None, 1)))


@pytest.mark.parametrize(
    ("counts", "filters", "checker", "expected"),
    [
        (NONE, Filters(), "ok", r"the database at DB has no proxies; add some with `proxycheck import FILE`"),
        (
            MIXED,
            Filters(tags=frozenset({"us"})),
            "ok",
            r"^no healthy proxy matches tags \['us'\]: 2 healthy proxies exist but none qualifies; 9 enabled "
            r"proxies, 2 healthy, 3 healthy but stale \(last successful check more than 900 s ago\), 3 unhealthy "
            r"\(26 ERROR_PROXY_CONNECT_TIMEOUT x2, no code x1\), 1 not checked yet, 1 disabled$",
        ),
        (MIXED, Filters(), None, r"; no proxycheck daemon is running against DB \(none has heartbeated within 3 of its heartbeat intervals\): start it with `proxycheck run`"),
        (MIXED, Filters(), "degraded", r"; the checker is degraded \(judge down\), so verdicts are on hold: see `proxycheck status`$"),
    ],
)
def test_explain(counts, filters, checker, expected):
    text = explain(counts, filters, max_age=900, where="DB", checker=checker, checker_reason="judge down")
    assert re.search(expected, text), text


def test_the_exception_counts_the_fleet_and_names_the_missing_daemon(make_pool, writer):
    ps = [proxy(n) for n in range(1, 6)]
    fleet(writer, ps[:2])
    check(writer, {ps[0]: True}, at=utcnow() - timedelta(hours=1))  # stale
    check(writer, {ps[1]: (False, {"code": 49})})
    sync_source(writer, "cli", ps, utcnow())  # 3 more, unknown
    with pytest.raises(NoHealthyProxy) as caught:
        make_pool().get()
    assert isinstance(caught.value, LookupError)
    text = str(caught.value)
    assert "5 enabled proxies, 0 healthy, 1 healthy but stale" in text
    assert "1 unhealthy (49 ERROR_PROXY_NOT_AUTHORISED x1), 3 not checked yet" in text
    assert "no proxycheck daemon is running" in text and "pw" not in text
    assert caught.value.details["unhealthy_codes"] == {"49": 1}


def test_a_degraded_checker_is_named(make_pool, writer):
    instance = register_instance(writer)
    heartbeat(writer, instance, "degraded", "judge http://judge/get unreachable")
    with pytest.raises(NoHealthyProxy, match=r"has no proxies"):
        make_pool().get()
    fleet(writer, [proxy(1)], healthy=False)
    with pytest.raises(NoHealthyProxy, match=r"the checker is degraded \(judge http://judge/get unreachable\)"):
        make_pool().get()
