"""The endpoint's Host rule on literal headers (guard.py rule 1): DNS rebinding is refused."""

from __future__ import annotations

import pytest

from proxycheck.http_api.guard import HostRule, split_host

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
