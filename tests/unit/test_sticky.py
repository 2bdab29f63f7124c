"""Sticky exits (pure): readings -> summary -> stability over the window, and follow-up visits."""

from datetime import UTC, datetime, timedelta

import pytest

from proxycheck.sticky import ExitSummary, follow_up_at, one_shot, stability, summarise

T = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
A, B, C = "198.51.100.1", "198.51.100.2", "198.51.100.3"
WINDOW = 120.0


def readings(*pairs):
    return [(T + timedelta(seconds=s), ip) for s, ip in pairs]


@pytest.mark.parametrize(
    ("pairs", "state"),
    [
        ((), "unconfirmed"),
        (((0, A),), "unconfirmed"),  # one reading
        (((0, A), (60, A)), "unconfirmed"),  # a chain spanning 60 s of 120
        (((0, A), (60, A), (120, A)), "stable"),  # gaps 60 + 60: a chain spanning the window
        (((0, A), (60, A), (119, A)), "unconfirmed"),  # spans 119 s of 120
        (((0, A), (119, A), (238, A)), "stable"),  # each gap just under the window
        # Readings a whole interval apart say nothing about the minutes between them.
        (((0, A), (120, A)), "unconfirmed"),  # the gap is not less than the window
        (((0, A), (300, A)), "unconfirmed"),
        (((0, A), (300, A), (600, A), (900, A)), "unconfirmed"),  # an hour of 5-minute visits: still not
        # A chain spanning the window, then normal visits with the same IP: it stands.
        (((0, A), (60, A), (120, A), (420, A), (720, A)), "stable"),
        # ... until another IP is read, however far apart: that IP's chain starts again.
        (((0, A), (60, A), (120, A), (420, B)), "unconfirmed"),
        (((0, A), (60, A), (120, A), (420, B), (480, B), (540, B)), "stable"),
        # Two short chains of one IP do not add up across a gap as long as the window.
        (((0, A), (60, A), (300, A), (360, A)), "unconfirmed"),
        (((0, A), (60, B)), "rotating"),  # changed within the window
        (((0, A), (300, B), (360, C)), "rotating"),
        (((0, A), (5, B), (400, B)), "rotating"),  # a change within the window stays on record
        (((0, A), (5, B), (60, B), (120, B), (180, B)), "rotating"),  # ... even under a later chain
        (((0, A), (300, B)), "unconfirmed"),  # changed, but the readings are further apart than the window
        (((0, A), (300, B), (600, A), (900, B)), "unconfirmed"),  # a gateway cycling IPs, read 300 s apart
    ],
)
def test_stability(pairs, state):
    got = stability(summarise(readings(*pairs), WINDOW), WINDOW)
    assert got.state == state, got.detail


def test_the_summary_and_its_detail():
    s = summarise(readings((0, A), (30, B), (90, A), (200, A)), 20.0)
    assert s.ips == (B, A)  # the latest IP last
    assert (s.run_seconds, s.change_gap) == (0.0, 30.0)  # 90 -> 200 is longer than the 20 s window
    s = summarise(readings((0, A), (30, B), (90, A), (150, A), (200, A)), WINDOW)
    assert s == ExitSummary((B, A), 110.0, 30.0, T + timedelta(seconds=200))  # rotating: the latest close pair
    got = stability(s, WINDOW)
    assert got.state == "rotating" and "exit changed within 30 s" in got.detail and f"{B}, {A}" in got.detail
    got = stability(summarise(readings((0, A), (60, A), (130, A)), WINDOW), WINDOW)
    assert got.detail == f"{A} held for 130 s over readings less than 120 s apart"


@pytest.mark.parametrize(
    ("pairs", "follow_up"),
    [
        (((0, A),), 60),  # one reading: read again half a window later
        (((0, A), (60, A)), 120),
        (((0, A), (300, A)), 360),  # only an interval apart: bring the next visit forward
        (((0, A), (60, A), (120, A)), None),  # stable, judged just now
        (((0, A), (60, B)), None),  # rotating, judged just now
        (((0, A), (60, A), (120, A), (420, A), (720, A)), None),  # stable, judged 600 s ago (< refresh)
        (((0, A), (60, A), (120, A), (1620, A), (1920, A)), 1980),  # judged 1800 s ago: re-read
        (((0, A), (60, A), (120, A), (1920, A), (1980, A)), 2040),  # until a whole window is re-proved
        (((0, A), (60, A), (120, A), (1920, A), (1980, A), (2040, A)), None),
        (((0, A), (60, A), (120, A), (180, A), (2000, A)), 2060),  # the chain's end confirmed it
        (((0, A), (60, B), (1860, B)), 1920),  # rotating, judged 1800 s ago: re-read
        (((0, A), (60, A), (120, A), (420, B)), 480),  # another IP: its chain starts again
    ],
)
def test_follow_up_visits(pairs, follow_up):
    expected = None if follow_up is None else T + timedelta(seconds=follow_up)
    assert follow_up_at(readings(*pairs), WINDOW, 1800.0) == expected
    # store/exits.py hands over the summary it has already made: the same answer
    assert follow_up_at(readings(*pairs), WINDOW, 1800.0, summarise(readings(*pairs), WINDOW)) == expected
    assert follow_up_at([], WINDOW, 1800.0) is None


def test_follow_ups_alone_settle_a_new_proxy_within_about_three_minutes():
    """Visits every 300 s plus rule 6's follow-ups: a stable exit is judged from the follow-ups."""
    seen: list[tuple[datetime, str]] = [(T, A)]
    while (at := follow_up_at(seen, WINDOW, 1800.0)) is not None:
        seen.append((at, A))
    assert stability(summarise(seen, WINDOW), WINDOW).state == "stable"
    assert seen[-1][0] - T == timedelta(seconds=120) and len(seen) == 3


def test_a_tagged_gateway_is_never_unstable_nor_sticky():
    s = summarise(readings((0, A), (10, B)), WINDOW)
    assert stability(s, WINDOW, gateway=True).state == "gateway"
    assert one_shot(A, frozenset({"rotating"})).state == "gateway"


def test_a_one_shot_check_says_one_reading():
    got = one_shot(A, frozenset())
    assert (got.state, got.ips) == ("unconfirmed", (A,)) and "one reading" in got.detail
