"""One definition of "may be handed out" (store/eligibility.py rule 1): the same rows through
every form of the rule give the same sets.

The forms: the SQL expression (``Eligibility.clause``, on SQLite and PostgreSQL), the Python
predicate (``Eligibility.admits``), the worker's hot re-read by id (``HotReads.fetch``) and a
worker's snapshot (``Snapshot``, for the filters it answers; target and sticky filters it leaves
to the database: ``Filters.needs_full_row``).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from proxycheck.proxy import Proxy
from proxycheck.sticky import DEFAULT_WINDOW
from proxycheck.store import add_proxies
from proxycheck.store.eligibility import FACT_COLUMNS, Eligibility, Facts, Filters, LeaseLimits
from proxycheck.store.models import ProxyRow as P
from proxycheck.store.models import WorkerLeaseRow as L
from proxycheck.store.selection import HotReads, facts_of, select_eligible
from proxycheck.worker.snapshot import Snapshot

from .helpers import NOW

MAX_AGE = 300.0
FRESH, STALE = NOW - timedelta(seconds=10), NOW - timedelta(seconds=1000)
BASE: dict[str, Any] = dict(
    enabled=True, state="healthy", reason=None, last_success_at=FRESH, usable_at=FRESH, usable_for=["google"],
    tags=["us"], scheme="http", anonymity="elite", exit_run_seconds=200.0, exit_change_gap=None, latency_ms=100.0,
    held_back=None, exit_country=None, exit_asn=None, geo_mismatch=None,
)
MISMATCH = "tagged US, exits in DE, AS3320 Deutsche Telekom AG"
# name: (columns that differ from BASE, leases on it: "held" / "ended" (cooling) per lease)
ROWS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "healthy": ({}, ()),
    "stale": ({"last_success_at": STALE, "usable_at": STALE}, ()),
    "never_succeeded": ({"last_success_at": None, "usable_at": None}, ()),
    "disabled": ({"enabled": False}, ()),
    "held_back": ({"held_back": "held back with its subnet 203.0.113.0/24: ..."}, ()),
    "held_back_banned_elsewhere": ({"held_back": "held back", "state": "unhealthy", "reason": "banned",
                                    "last_success_at": STALE, "usable_for": ["google"]}, ()),
    "unknown": ({"state": "unknown", "last_success_at": None, "usable_at": None}, ()),
    "unhealthy": ({"state": "unhealthy", "reason": "connect_refused", "usable_for": ["google"]}, ()),
    "banned_elsewhere": ({"state": "unhealthy", "reason": "banned", "last_success_at": STALE,
                          "usable_for": ["google"]}, ()),
    "banned_here": ({"state": "unhealthy", "reason": "banned", "usable_for": ["cloudflare"]}, ()),
    "banned_stale": ({"state": "unhealthy", "reason": "banned", "usable_at": STALE}, ()),
    "healthy_not_usable_for_google": ({"usable_for": []}, ()),
    "socks_anonymous_de": ({"scheme": "socks5", "anonymity": "anonymous", "tags": ["de"]}, ()),
    "no_anonymity_known": ({"anonymity": None, "tags": ["us", "de"]}, ()),
    "rotating": ({"exit_run_seconds": 30.0, "exit_change_gap": 20.0}, ()),
    "gateway": ({"tags": ["us", "rotating"], "exit_run_seconds": 500.0}, ()),
    "unconfirmed": ({"exit_run_seconds": 50.0}, ()),
    "changed_slowly": ({"exit_run_seconds": 200.0, "exit_change_gap": 500.0}, ()),
    "changed_at_window": ({"exit_run_seconds": DEFAULT_WINDOW, "exit_change_gap": DEFAULT_WINDOW}, ()),
    "no_exit_read": ({"exit_run_seconds": None}, ()),
    "leased_one": ({}, ("held",)),
    "leased_full": ({}, ("held", "held")),
    "cooling": ({}, ("ended",)),
    "expired_cooled": ({}, ("cooled",)),
    "geo_us": ({"tags": ["us", "country:us"], "exit_country": "US", "exit_asn": 64500}, ()),
    "geo_mismatch": ({"tags": ["us", "country:us"], "exit_country": "DE", "exit_asn": 3320, "geo_mismatch": MISMATCH}, ()),
    "geo_unknown": ({"tags": ["us", "country:us"]}, ()),  # the databases do not know its exit
    "geo_de_untagged": ({"exit_country": "DE", "exit_asn": 3320}, ()),
    "geo_mismatch_stale": ({"tags": ["country:us"], "exit_country": "DE", "exit_asn": 3320, "geo_mismatch": MISMATCH,
                            "last_success_at": STALE, "usable_at": STALE}, ()),
    # vantage.py rule 3: refused from another vantage; handed out only with allow_ip_locked.
    "ip_locked": ({"state": "unhealthy", "reason": "ip_locked", "last_success_at": STALE}, ()),
    "ip_locked_stale": ({"state": "unhealthy", "reason": "ip_locked", "usable_at": STALE}, ()),
}

US, DE, COUNTRY_US = frozenset({"us"}), frozenset({"de"}), frozenset({"country:us"})
LIMITS = LeaseLimits(max_concurrent=2, now=NOW)
# (filters, with lease limits)
CASES = [
    (Filters(), False),
    (Filters(tags=US), False),
    (Filters(tags=US | DE), False),
    (Filters(schemes=frozenset({"socks5"})), False),
    (Filters(schemes=frozenset({"http", "socks5"}), tags=DE), False),
    (Filters(min_anonymity="elite"), False),
    (Filters(min_anonymity="anonymous"), False),
    (Filters(exclude=frozenset({"healthy", "rotating"})), False),
    (Filters(target="google"), False),
    (Filters(target="cloudflare"), False),
    (Filters(target="google", tags=US, min_anonymity="elite"), False),
    (Filters(sticky=True), False),
    (Filters(sticky=True, sticky_seconds=40.0), False),
    (Filters(sticky=True, target="google"), False),
    (Filters(country="US"), False),
    (Filters(country="de"), False),
    (Filters(asn=3320), False),
    (Filters(country="DE", asn=3320, tags=US), False),
    (Filters(tags=COUNTRY_US), False),
    (Filters(tags=COUNTRY_US, target="google"), False),
    (Filters(country="US", target="google"), False),
    (Filters(), True),
    (Filters(target="google", sticky=True), True),
    (Filters(tags=COUNTRY_US), True),
]
ALLOWED = [(Filters(), False), (Filters(target="google"), False), (Filters(tags=US), True)]  # allow_ip_locked


def key_of(name: str) -> str:
    return Proxy("http", "203.0.113.9", 8000 + list(ROWS).index(name), None, None).key


@pytest.fixture
def table(writer) -> dict[str, int]:
    """ROWS in the database; name -> id. Keys in ``exclude`` are row names, so rows are keyed
    by name in the result sets (``key`` is the proxy's)."""
    proxies = {name: Proxy("http", "203.0.113.9", 8000 + i, None, None) for i, name in enumerate(ROWS)}
    add_proxies(writer, proxies.values(), now=NOW - timedelta(hours=1))
    ids = {}
    with writer.begin() as conn:
        for name, (columns, leases) in ROWS.items():
            values = {**BASE, **columns}
            pid = conn.scalar(update(P).where(P.key == proxies[name].key).values(**values).returning(P.id))
            ids[name] = pid
            for n, kind in enumerate(leases):
                ends = {"held": NOW + timedelta(seconds=60), "ended": NOW - timedelta(seconds=5),
                        "cooled": NOW - timedelta(seconds=50)}[kind]
                conn.execute(insert(L).values(
                    id=f"{name}-{n}", proxy_id=pid, worker="test", acquired_at=NOW - timedelta(seconds=90),
                    expires_at=ends, released_at=None, cool_until=ends + timedelta(seconds=30)))
    return ids


def names_excluding(filters: Filters, ids: dict[str, int]) -> Filters:
    """``exclude`` holds row names in CASES; the rule wants proxy keys."""
    if not filters.exclude:
        return filters
    return dataclasses.replace(filters, exclude=frozenset(key_of(n) for n in filters.exclude))


def lease_facts(name: str) -> dict[str, Any]:
    leases = ROWS[name][1]
    return {"leases_held": leases.count("held"), "cooling": "ended" in leases}


def facts(name: str) -> Facts:
    """A row of ROWS as ``Facts``, without a database."""
    v = {**BASE, **ROWS[name][0]}
    return Facts(key_of(name), v["enabled"], v["state"], v["reason"], v["last_success_at"], v["usable_at"],
                 frozenset(v["usable_for"]), frozenset(v["tags"]), v["scheme"], v["anonymity"],
                 v["exit_run_seconds"], v["exit_change_gap"], v["held_back"], v["exit_country"], v["exit_asn"],
                 v["geo_mismatch"], **lease_facts(name))


@pytest.mark.parametrize(("filters", "leased", "allow"), [(*c, False) for c in CASES] + [(*c, True) for c in ALLOWED],
                         ids=[f"{c[0].describe() or 'no filters'}{' leased' if c[1] else ''}" for c in CASES]
                         + [f"{c[0].describe() or 'no filters'}{' leased' if c[1] else ''} allow_ip_locked" for c in ALLOWED])
def test_every_form_of_the_rule_admits_the_same_rows(writer, table, filters, leased, allow):
    by_id = {pid: name for name, pid in table.items()}
    rule = Eligibility.at(NOW, MAX_AGE, names_excluding(filters, table), LIMITS if leased else None, allow_ip_locked=allow)
    with writer.begin() as conn:
        in_sql = {by_id[pid] for pid in conn.scalars(select(P.id).where(rule.clause(conn)))}
        in_python = {by_id[row.id] for row in conn.execute(select(P.id, *FACT_COLUMNS))
                     if rule.admits(facts_of(row)._replace(**lease_facts(by_id[row.id])))}
    assert in_sql == in_python
    assert in_sql, "every case admits some row: a vacuous case proves nothing"
    assert in_sql != set(ROWS), "every case refuses some row"
    if not leased:
        assert {p.port - 8000 for p in select_eligible(writer, rule)} == {list(ROWS).index(n) for n in in_sql}
        hot = HotReads(writer)
        assert {name for name, pid in table.items() if hot.fetch(pid, rule) is not None} == in_sql
        if not rule.filters.needs_full_row and not allow:  # the pool asks the database then (pool.py)
            snap = Snapshot(hot.candidates(rule), 0.0, 0.0)
            proposed = {by_id[c[0]] for c in snap.by_latency(rule.filters, hot.cutoff(rule.fresh_since))}
            assert proposed == in_sql


GEO_FRESH = ("geo_us", "geo_mismatch", "geo_unknown", "geo_de_untagged")


def test_the_table_covers_every_branch():
    """The rows above reach each clause of the rule: target, sticky (rotating, gateway,
    unconfirmed, never read), freshness, leases (held to the limit, cooling), a subnet held back
    (refused with and without a target, where the same row unheld is admitted), where the exit is
    (observed country and AS; a country tag its exit contradicts)."""
    expected = {
        Filters(): {"healthy", "healthy_not_usable_for_google", "socks_anonymous_de", "no_anonymity_known",
                    "rotating", "gateway", "unconfirmed", "changed_slowly", "changed_at_window", "no_exit_read",
                    "leased_one", "leased_full", "cooling", "expired_cooled", *GEO_FRESH},
        Filters(target="google"): {"healthy", "banned_elsewhere", "socks_anonymous_de", "no_anonymity_known",
                                   "rotating", "gateway", "unconfirmed", "changed_slowly", "changed_at_window",
                                   "no_exit_read", "leased_one", "leased_full", "cooling", "expired_cooled", *GEO_FRESH},
        Filters(sticky=True): {"healthy", "healthy_not_usable_for_google", "socks_anonymous_de",
                               "no_anonymity_known", "changed_slowly", "changed_at_window", "leased_one",
                               "leased_full", "cooling", "expired_cooled", *GEO_FRESH},
    }
    for filters, names in expected.items():
        rule = Eligibility.at(NOW, MAX_AGE, filters)
        assert {n for n in ROWS if rule.admits(facts(n))} == names, filters.describe()
    unheld = facts("held_back")._replace(held_back=None)
    assert Eligibility.at(NOW, MAX_AGE, Filters()).admits(unheld) and not Eligibility.at(NOW, MAX_AGE).admits(facts("held_back"))
    assert not Eligibility.at(NOW, MAX_AGE, Filters(target="google")).admits(facts("held_back_banned_elsewhere"))
    assert Eligibility.at(NOW, MAX_AGE, Filters(target="google")).admits(facts("held_back_banned_elsewhere")._replace(held_back=None))
    geo = {
        Filters(country="US"): {"geo_us"},
        Filters(country="DE"): {"geo_mismatch", "geo_de_untagged"},  # observed values, whatever the tag says
        Filters(asn=3320): {"geo_mismatch", "geo_de_untagged"},
        Filters(tags=COUNTRY_US): {"geo_us", "geo_unknown"},  # the tag, not where its exit was seen to be
    }
    for filters, names in geo.items():
        assert {n for n in ROWS if n.startswith("geo_") and Eligibility.at(NOW, MAX_AGE, filters).admits(facts(n))} == names
    assert Eligibility.at(NOW, MAX_AGE).admits(facts("geo_mismatch"))  # it works: a request without a country gets it
    for filters in (Filters(), Filters(target="google")):  # ip_locked: out unless allowed, and then while fresh
        assert not Eligibility.at(NOW, MAX_AGE, filters).admits(facts("ip_locked"))
        assert Eligibility.at(NOW, MAX_AGE, filters, allow_ip_locked=True).admits(facts("ip_locked"))
        assert not Eligibility.at(NOW, MAX_AGE, filters, allow_ip_locked=True).admits(facts("ip_locked_stale"))
    leased = Eligibility.at(NOW, MAX_AGE, Filters(), LIMITS)
    assert not leased.admits(facts("leased_full")) and not leased.admits(facts("cooling"))
    assert leased.admits(facts("leased_one")) and leased.admits(facts("expired_cooled"))


def test_the_docs_quote_the_rule_as_the_code_states_it():
    """docs/handing-out.md quotes ``Eligibility``'s docstring: the rule has one wording."""
    import inspect
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "handing-out.md").read_text()
    assert inspect.cleandoc(Eligibility.__doc__ or "") in page
