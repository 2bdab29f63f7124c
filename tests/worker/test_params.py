"""What the worker API does with odd arguments: a ``ValueError`` naming the parameter, never a
bare ``TypeError``/``AttributeError``/``OverflowError``, and never a wrong answer (params.py,
eligibility.py rule 2). Against a real SQLite database migrated by Alembic."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import proxycheck
from proxycheck.errors import NoHealthyProxy
from proxycheck.store.eligibility import Filters
from proxycheck.worker import filters_from_query, make_filters, proxy_from_reference

from .helpers import fleet, proxy

P1 = proxy(1, tags={"us"})


@pytest.fixture
def one_proxy(sqlite_url, writer_sqlite):
    fleet(writer_sqlite, [P1])
    proxycheck.configure(sqlite_url)
    return P1


@pytest.fixture
def writer_sqlite(sqlite_url):
    from proxycheck.store import make_engine

    engine = make_engine(sqlite_url, writer=True)
    yield engine
    engine.dispose()


# (call, the parameter the ValueError must name). Each row failed on main with another
# exception, or with no exception and a wrong answer (noted).
BAD = [
    (lambda: proxycheck.report(P1, {1: 2, "x": 3}), "not a captcha service response"),  # TypeError from sorted()
    (lambda: proxycheck.get_healthy_proxies(limit=10**20), "limit"),  # OverflowError
    (lambda: proxycheck.get_healthy_proxies(limit=-1), "limit"),  # returned every proxy
    (lambda: proxycheck.get_healthy_proxies(limit=True), "limit"),  # returned one
    (lambda: proxycheck.get_healthy_proxies(limit=1.5), "limit"),
    (lambda: proxycheck.get_healthy_proxy(scheme=[None]), "scheme"),  # AttributeError
    (lambda: proxycheck.get_healthy_proxy(anonymity=123), "anonymity"),  # AttributeError
    (lambda: proxycheck.get_healthy_proxy(tags=None), "tags"),  # TypeError
    (lambda: proxycheck.get_healthy_proxy(tags=123), "tags"),  # TypeError
    (lambda: proxycheck.get_healthy_proxy(tags=[1]), "tags"),  # matched the tag "1"
    (lambda: proxycheck.get_healthy_proxy(exclude=None), "exclude"),  # TypeError
    (lambda: proxycheck.get_healthy_proxy(strategy=""), "strategy"),  # fell back to the default
    (lambda: proxycheck.get_healthy_proxies(strategy=""), "strategy"),  # fell back to fastest
    (lambda: proxycheck.get_healthy_proxy(target=""), "target"),
    (lambda: proxycheck.get_healthy_proxy(sticky="yes"), "sticky"),
    (lambda: proxycheck.get_healthy_proxy(Filters(), tags="us"), "tags"),  # a Filters and keywords
    (lambda: proxycheck.get_healthy_proxy({"tags": "us"}), "filters"),
    (lambda: proxycheck.acquire(strategy=""), "strategy"),
    (lambda: proxycheck.acquire(tags=None), "tags"),
    (lambda: Filters(tags=frozenset({None})), "tags"),  # type: ignore[arg-type]
    (lambda: Filters(sticky_seconds=math.nan), "sticky_seconds"),
]


@pytest.mark.parametrize(("call", "named"), BAD)
def test_bad_arguments_are_a_value_error_naming_the_parameter(one_proxy, call, named):
    with pytest.raises(ValueError, match=named):
        call()


def test_non_ascii_digits_are_not_an_error_id(one_proxy):
    """"٢٨" is int() 28 (ERROR_PROXY_BANNED's id on anti-captcha): it must not take the proxy out."""
    result = proxycheck.report(P1, "٢٨")
    assert (result.kind, result.took_out) == ("not_about_proxy", False)
    with pytest.raises(ValueError, match="errorId"):
        proxycheck.report(P1, {"errorId": "٢٨"})
    assert proxycheck.get_healthy_proxy() == P1


def test_one_filters_value_or_its_keywords(one_proxy):
    wanted = Filters(tags=frozenset({"us"}))
    assert proxycheck.get_healthy_proxy(wanted) == proxycheck.get_healthy_proxy(tags="us") == P1
    assert proxycheck.get_healthy_proxies(wanted, limit=0) == []
    assert proxycheck.get_healthy_proxies(Filters(tags=frozenset({"de"}))) == []
    with proxycheck.lease(wanted, ttl=5) as held:
        assert held == P1


# -- every public worker function, arbitrary arguments --------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=12),
    st.binary(max_size=4),
    st.sampled_from(["", " ", "us", "http", "SOCKS5", "elite", "anonymous", "random", "fastest", "least_used",
                     "round_robin", "٢٨", "²", "28", "ERROR_PROXY_BANNED", P1.url, P1.key, "http://x:y@", "ftp://a:1"]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.frozensets(st.one_of(st.text(max_size=6), st.none(), st.integers()), max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.sampled_from(["errorId", "errorCode", "url"])),
                    SCALARS, max_size=3),
)
FILTER_NAMES = ("tags", "scheme", "anonymity", "exclude", "target", "sticky", "strategy")
DOCUMENTED = (ValueError, NoHealthyProxy)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def keywords(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from(names), VALUES, max_size=3)


def only_documented(call, *args, **kwargs) -> None:
    try:
        result = call(*args, **kwargs)
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except DOCUMENTED:
        pass


@FUZZ
@given(kwargs=keywords(FILTER_NAMES))
def test_get_healthy_proxy(one_proxy, kwargs):
    only_documented(proxycheck.get_healthy_proxy, **kwargs)
    only_documented(proxycheck.aget_healthy_proxy, **kwargs)


@FUZZ
@given(kwargs=keywords((*FILTER_NAMES, "limit")))
def test_get_healthy_proxies(one_proxy, kwargs):
    try:
        found = proxycheck.get_healthy_proxies(**kwargs)
    except DOCUMENTED:
        return
    limit = kwargs.get("limit")
    assert limit is None or (type(limit) is int and 0 <= limit), f"limit={limit!r} was accepted"
    assert len(found) <= (1 if limit is None else limit)


@FUZZ
@given(ref=VALUES, outcome=VALUES, kwargs=keywords(("worker",)))
def test_report(one_proxy, ref, outcome, kwargs):
    only_documented(proxycheck.report, ref, outcome, **kwargs)
    only_documented(proxycheck.areport, P1, outcome, **kwargs)


@FUZZ
@given(kwargs=keywords((*FILTER_NAMES, "ttl", "worker")), outcome=VALUES)
def test_acquire_and_release(one_proxy, kwargs, outcome):
    try:
        held = proxycheck.acquire(**kwargs)
    except DOCUMENTED:
        return
    only_documented(proxycheck.release, held, outcome)
    only_documented(proxycheck.release, held.id)


@FUZZ
@given(ref=VALUES, outcome=VALUES)
def test_release_of_anything(one_proxy, ref, outcome):
    only_documented(proxycheck.release, ref, outcome)


@FUZZ
@given(kwargs=keywords(("tags", "scheme", "anonymity", "exclude", "target", "sticky")), ref=VALUES)
def test_make_filters_and_references(kwargs, ref):
    only_documented(make_filters, **kwargs)
    only_documented(proxy_from_reference, ref)


@FUZZ
@given(query=st.dictionaries(st.sampled_from((*FILTER_NAMES, "tag", "format", "color")), st.text(max_size=12), max_size=4))
def test_filters_from_query(query):
    only_documented(filters_from_query, query)
