"""The endpoint's Host rule on literal headers (guard.py rule 1): DNS rebinding is refused; the
bearer header (rule 2) and the per-address throttle of wrong credentials (rule 5) on a fake clock."""

from __future__ import annotations

import pytest

from proxycheck.http_api.guard import HostRule, Throttle, bearer, split_host

LOOPBACK = HostRule.build("127.0.0.1", 8181)
EVERYWHERE = HostRule.build("0.0.0.0", 8181, ["proxycheck.internal", "edge.example:443"])
PRIVATE = HostRule.build("10.1.2.3", 8181)
V6 = HostRule.build("[::1]", 8181)
BY_NAME = HostRule.build("localhost", 8181)


@pytest.mark.parametrize("rule, host, allowed", [
    (LOOPBACK, "127.0.0.1:8181", True),
    (LOOPBACK, "localhost:8181", True),
    (LOOPBACK, "LOCALHOST.:8181", True),
    (LOOPBACK, "127.0.0.1:8182", False),  # another port
    (LOOPBACK, "127.0.0.1", False),  # port 80 implied
    (LOOPBACK, "evil.example:8181", False),  # the rebinding case: an attacker's name
    (LOOPBACK, "127.0.0.2:8181", False),
    (LOOPBACK, "", False),
    (LOOPBACK, None, False),
    (LOOPBACK, "127.0.0.1:8181@evil.example", False),
    (LOOPBACK, "127.0.0.1:notaport", False),
    (EVERYWHERE, "192.168.7.9:8181", True),  # any IP literal: rebinding needs a name
    (EVERYWHERE, "[fe80::1]:8181", True),
    (EVERYWHERE, "localhost:8181", True),
    (EVERYWHERE, "evil.example:8181", False),
    (EVERYWHERE, "proxycheck.internal", True),  # allow-listed, any port
    (EVERYWHERE, "Proxycheck.Internal:9000", True),
    (EVERYWHERE, "edge.example:443", True),
    (EVERYWHERE, "edge.example:8443", False),  # allow-listed with a port: only that port
    (PRIVATE, "10.1.2.3:8181", True),
    (PRIVATE, "localhost:8181", False),  # not listening on loopback
    (PRIVATE, "10.1.2.4:8181", False),
    (V6, "[::1]:8181", True),
    (V6, "localhost:8181", True),
    (V6, "[::2]:8181", False),
    (BY_NAME, "localhost:8181", True),
    (BY_NAME, "127.0.0.1:8181", True),
    (BY_NAME, "[::1]:8181", True),
    (BY_NAME, "10.0.0.1:8181", False),
    (BY_NAME, "evil.example:8181", False),
])
def test_host_rule(rule, host, allowed):
    assert rule.allows(host) is allowed


@pytest.mark.parametrize("value, parsed", [
    ("Example.COM.:80", ("example.com", 80)),
    ("[::1]:8181", ("::1", 8181)),
    ("host", ("host", 80)),
    ("host:99999", None),
    ("a b", None),
    ("", None),
])
def test_split_host(value, parsed):
    assert split_host(value) == parsed


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"),
    ("bearer abc", "abc"),  # RFC 9110 §11.1: the scheme is case-insensitive
    ("BEARER   abc", "abc"),
    ("  Bearer abc  ", "abc"),
    ("Bearer", None),
    ("Bearer ", None),
    ("Basic abc", None),
    ("abc", None),
    ("Bearerabc", None),
    ("", None),
    (None, None),
])
def test_bearer(header, token):
    assert bearer(header) == token


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_after_limit_failures_within_the_window():
    clock = Clock()
    throttle = Throttle(limit=3, window=60, clock=clock)
    assert throttle.failed("a") == 1
    clock.now += 5
    assert throttle.failed("a") == 2
    assert throttle.retry_after("a") == 0
    clock.now += 5
    assert throttle.failed("a") == 3
    assert throttle.retry_after("a") == 50  # until the first of the three leaves the window
    assert throttle.retry_after("b") == 0  # per address
    clock.now += 49.5
    assert throttle.retry_after("a") == 1
    clock.now += 0.5
    assert throttle.retry_after("a") == 0
    assert throttle.failed("a") == 3  # the two later ones still inside: throttled again at once
    assert throttle.retry_after("a") == 5


def test_throttle_forgets_failures_older_than_the_window():
    clock = Clock()
    throttle = Throttle(limit=3, window=60, clock=clock)
    throttle.failed("a")
    clock.now += 61
    assert throttle.failed("a") == 1


def test_throttle_memory_is_bounded():
    throttle = Throttle(limit=2, window=60, max_clients=3, clock=Clock())
    for address in ("a", "b", "c", "d"):
        throttle.failed(address)
    throttle.failed("b")
    assert throttle.retry_after("b") > 0
    assert len(throttle._failures) == 3 and "a" not in throttle._failures  # the stalest went first
