"""The account guard's pure parts (guard.py): names, subnets, budgets, the config, the gauges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from proxycheck.config import settings_from_dict
from proxycheck.errors import ConfigError
from proxycheck.guard import Budget, GuardState, budget_for, service_name, subnet_of
from proxycheck.metrics import _guard_gauges


@pytest.mark.parametrize(("host", "subnet"), [
    ("203.0.113.77", "203.0.113.0/24"),
    ("2001:db8:1:2::5", "2001:db8:1::/48"),
    ("[2001:db8:ffff:2::5]", "2001:db8:ffff::/48"),
    ("::ffff:198.51.100.7", "198.51.100.0/24"),  # IPv4-mapped: the IPv4 address's /24
    ("proxy.example.net", None),
    ("localhost", None),
])
def test_subnet_of(host, subnet):
    assert subnet_of(host) == subnet


@pytest.mark.parametrize(("given", "name"), [("capmonster", "capmonster"), (" CapMonster ", "capmonster"),
                                             ("2captcha", "2captcha"), ("my.service_2-b", "my.service_2-b")])
def test_service_names(given, name):
    assert service_name(given) == name


@pytest.mark.parametrize("bad", ["", " ", "-lead", "two words", "x" * 65, "né", None, 7, ["capmonster"]])
def test_bad_service_names(bad):
    with pytest.raises(ValueError, match=r"^service: expected a captcha service's name"):
        service_name(bad)


def test_budgets_documented_configured_and_default():
    guard = settings_from_dict({"guard": {"max_proxy_errors": 4, "window": 60, "capmonster": {"window": 120},
                                          "mine": {"max_proxy_errors": 0}}}, "f.toml").guard
    assert budget_for(guard, "capmonster") == Budget("capmonster", 5, 120.0)  # documented 5 kept, window set
    assert budget_for(guard, "anti-captcha") == Budget("anti-captcha", 10, 600.0)
    assert budget_for(guard, "2captcha") == Budget("2captcha", 10, 600.0)
    assert budget_for(guard, "other") == Budget("other", 4, 60.0)
    assert not budget_for(guard, "mine").enabled


@pytest.mark.parametrize(("table", "message"), [
    ({"CapMonster": {"window": 60}}, r"^f.toml: \[guard.CapMonster\]: write the service's name as 'capmonster'"),
    ({"two words": {}}, r"^f.toml: \[guard.two words\]: service: expected"),
    ({"capmonster": {"max_errors": 3}}, r"^f.toml: \[guard.capmonster\]: unknown key 'max_errors' \(known: max_proxy_errors, window\)"),
    ({"capmonster": {"window": 0}}, r"^f.toml: \[guard.capmonster\].window: "),
    ({"max_proxy_errors": -1}, r"^f.toml: \[guard\].max_proxy_errors: "),
    ({"subnet_errors": "3"}, r"^f.toml: \[guard\].subnet_errors: "),
    ({"colour": 1}, r"^f.toml: \[guard\]: unknown key 'colour' \(known: max_proxy_errors, subnet_errors, window, \[guard.<service>\]\)"),
])
def test_bad_guard_config_names_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_dict({"guard": table}, "f.toml")


def test_a_tripped_state_explains_itself_and_refuses():
    at = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    state = GuardState("capmonster", 5, 600.0, 6, True, at, (("ERROR_PROXY_BANNED", 6),),
                       tuple((f"http://user@192.0.2.{n}:80", 1) for n in range(6)), (("192.0.2.0/24", 6),))
    assert state.reason == (
        "guard capmonster tripped: 6 proxy errors in the last 10 min spent its budget of 5 (6 × ERROR_PROXY_BANNED) on "
        "proxies http://user@192.0.2.0:80 (1), http://user@192.0.2.1:80 (1), http://user@192.0.2.2:80 (1), "
        "http://user@192.0.2.3:80 (1), http://user@192.0.2.4:80 (1) ...; subnets 192.0.2.0/24 (6); hand-out for "
        "capmonster resumes at 2026-12-06 13:00:00 UTC. Look at these proxies (proxycheck history), not at the service")
    exc = state.refusal()
    assert isinstance(exc, LookupError) and exc.service == "capmonster" and exc.resumes_at == at
    assert exc.details["resumes_at"] == "2026-12-06T13:00:00+00:00" and exc.details["budget"] == 5


def test_the_gauges_every_service_even_at_zero():
    """The series names are the interface of the alert rules (issue 20 item 3); a real daemon's
    /metrics is parsed in tests/test_http_api.py."""
    guards = {"capmonster": GuardState("capmonster", 5, 600.0, 5, True, None),
              "2captcha": GuardState("2captcha", 10, 600.0, 0, False, None)}
    families = {f.name: {s.labels["service"]: s.value for s in f.samples} for f in _guard_gauges(guards)}
    assert families == {"proxycheck_guard_tripped": {"capmonster": 1, "2captcha": 0},
                        "proxycheck_guard_errors": {"capmonster": 5, "2captcha": 0},
                        "proxycheck_guard_budget": {"capmonster": 5, "2captcha": 10}}
