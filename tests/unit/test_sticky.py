"""Sticky exits (pure): readings -> summary -> stability over the window."""

from datetime import UTC, datetime, timedelta

import pytest

from proxycheck.sticky import ExitSummary, one_shot, stability, summarise

T = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
A, B = "198.51.100.1", "198.51.100.2"


def readings(*pairs):
    return [(T + timedelta(seconds=s), ip) for s, ip in pairs]


@pytest.mark.parametrize(
    ("pairs", "state"),
    [
        ((), "unconfirmed"),
        (((0, A),), "unconfirmed"),  # one reading
        (((0, A), (60, A)), "unconfirmed"),  # held 60 s of 120
        (((0, A), (120, A)), "stable"),
        (((0, A), (300, A), (600, A)), "stable"),
        (((0, A), (60, B)), "rotating"),  # changed within the window
        (((0, A), (5, B), (400, B)), "rotating"),  # a change within the window stays on record
        (((0, A), (300, B)), "unconfirmed"),  # changed, but the readings are further apart than the window
        (((0, A), (300, B), (600, B)), "stable"),
        (((0, A), (300, B), (360, B)), "unconfirmed"),
    ],
)
def test_stability(pairs, state):
    assert stability(summarise(readings(*pairs)), 120.0).state == state


def test_the_summary_does_not_depend_on_the_window():
    s = summarise(readings((0, A), (30, B), (90, A), (200, A)))
    assert s == ExitSummary((B, A), 110.0, 30.0)  # the latest IP last
    assert stability(s, 20.0).state == "stable" and stability(s, 120.0).state == "rotating"
    assert "198.51.100.1, 198.51.100.2" in stability(s, 120.0).detail or "198.51.100.2, 198.51.100.1" in stability(s, 120.0).detail


def test_a_tagged_gateway_is_never_unstable_nor_sticky():
    s = summarise(readings((0, A), (10, B)))
    assert stability(s, 120.0, gateway=True).state == "gateway"
    assert one_shot(A, frozenset({"rotating"})).state == "gateway"


def test_a_one_shot_check_says_one_reading():
    got = one_shot(A, frozenset())
    assert (got.state, got.ips) == ("unconfirmed", (A,)) and "one reading" in got.detail
