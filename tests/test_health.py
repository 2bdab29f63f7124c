"""The health state machine, on a fake clock: rise/fall, definitive codes, flapping, backoff,
jitter (first checks of new proxies: tests/store/test_store_schedule.py)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from proxycheck.errors import ConfigError
from proxycheck.health import (
    HealthPolicy,
    HealthState,
    Transition,
    advance,
    retry_after_unavailable,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
STEADY = HealthPolicy(jitter=0.0)  # exact intervals for the tables

# One result per letter: P pass, F failure (27 read_timeout), B banned (28, not definitive),
# X transparent (29) and A not authorised (49), both definitive.
RESULTS = {
    "P": (True, None, None),
    "F": (False, 27, "read_timeout"),
    "B": (False, 28, "banned"),
    "X": (False, 29, "ip_leaked"),
    "A": (False, 49, "auth_rejected"),
}
HEALTHY = HealthState("healthy", consecutive_successes=5)
UNHEALTHY = HealthState("unhealthy", consecutive_failures=3, failing_streak=1, code=27, reason="read_timeout")


def run(start: HealthState, results: str, policy: HealthPolicy = STEADY, seed: int = 0) -> list[Transition]:
    """Apply ``results`` one after another, each at the previous transition's next check."""
    rng = random.Random(seed)
    state, now, out = start, T0, []
    for letter in results:
        healthy, code, reason = RESULTS[letter]
        t = advance(state, healthy=healthy, code=code, reason=reason, now=now, policy=policy, rng=rng)
        out.append(t)
        state, now = t.state, t.next_check_at
    return out


def gaps(transitions: list[Transition]) -> list[float]:
    """Seconds from each check to the next one it scheduled."""
    starts = [T0] + [t.next_check_at for t in transitions[:-1]]
    return [(t.next_check_at - s).total_seconds() for t, s in zip(transitions, starts, strict=True)]


def names(transitions: list[Transition]) -> list[str]:
    return [t.state.state for t in transitions]


# -- rise and fall ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "results", "expected"),
    [
        # From unknown one check decides (Envoy's startup rule): one pass healthy, one failure unhealthy.
        (HealthState(), "P", ["healthy"]),
        (HealthState(), "FFF", ["unhealthy", "unhealthy", "unhealthy"]),
        (HealthState(), "FPP", ["unhealthy", "unhealthy", "healthy"]),
        # fall=3 consecutive failures; a pass in between resets the count.
        (HEALTHY, "FFF", ["healthy", "healthy", "unhealthy"]),
        (HEALTHY, "FFPFF", ["healthy"] * 5),
        (HEALTHY, "BBB", ["healthy", "healthy", "unhealthy"]),  # banned counts like any failure
        # rise=2 consecutive passes to come back.
        (UNHEALTHY, "PP", ["unhealthy", "healthy"]),
        (UNHEALTHY, "PFPP", ["unhealthy", "unhealthy", "unhealthy", "healthy"]),
    ],
)
def test_rise_and_fall(start, results, expected):
    assert names(run(start, results)) == expected


@pytest.mark.parametrize(
    ("rise", "fall", "results", "expected_last"),
    [
        (1, 1, "F", "unhealthy"),
        (1, 1, "FP", "healthy"),
        (3, 5, "FFFF", "healthy"),
        (3, 5, "FFFFF", "unhealthy"),
        (3, 5, "FFFFFPP", "unhealthy"),
        (3, 5, "FFFFFPPP", "healthy"),
    ],
)
def test_rise_and_fall_follow_the_policy(rise, fall, results, expected_last):
    policy = HealthPolicy(rise=rise, fall=fall, jitter=0.0)
    assert run(HEALTHY, results, policy)[-1].state.state == expected_last


# -- definitive codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "letter", "expected", "code"),
    [
        (HealthState(), "X", "unhealthy", 29),
        (HealthState(), "A", "unhealthy", 49),
        (HEALTHY, "X", "unhealthy", 29),
        (HEALTHY, "A", "unhealthy", 49),
        (HEALTHY, "F", "healthy", 27),  # not definitive: one failure of three
        (HEALTHY, "B", "healthy", 28),
    ],
)
def test_definitive_codes_are_applied_at_once(start, letter, expected, code):
    (t,) = run(start, letter)
    assert (t.state.state, t.state.code, t.changed) == (expected, code, expected != start.state)


def test_a_definitive_code_while_unhealthy_just_extends_the_streak():
    (t,) = run(UNHEALTHY, "A")
    assert (t.state.state, t.state.failing_streak, t.state.code, t.changed) == ("unhealthy", 2, 49, False)


# -- flapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "results", "never"),
    [
        (HEALTHY, "FPFPFPFFPFFP", "unhealthy"),  # never 3 failures in a row
        (UNHEALTHY, "PFPFPFPFPF", "healthy"),  # never 2 passes in a row
    ],
)
def test_flapping_does_not_change_state(start, results, never):
    assert never not in names(run(start, results))


def test_flapping_while_unhealthy_keeps_backing_off():
    transitions = run(UNHEALTHY, "PFPFPF")
    streaks = [t.state.failing_streak for t in transitions]
    assert streaks == [1, 2, 2, 3, 3, 4]


# -- what the state carries ------------------------------------------------------------------


def test_changed_at_is_set_only_on_a_change():
    transitions = run(HEALTHY, "FFFPP")
    assert [t.changed for t in transitions] == [False, False, True, False, True]
    assert transitions[0].state.changed_at is None
    assert transitions[2].state.changed_at == transitions[1].next_check_at  # when the 3rd ran
    assert transitions[3].state.changed_at == transitions[2].state.changed_at


def test_failure_code_stays_until_recovered():
    transitions = run(HEALTHY, "FFAPP")
    assert [(t.state.code, t.state.reason) for t in transitions] == [
        (27, "read_timeout"),
        (27, "read_timeout"),
        (49, "auth_rejected"),
        (49, "auth_rejected"),  # recovering: still says why it is not served
        (None, None),
    ]


def test_counters_reset_each_other():
    t = run(HEALTHY, "FFP")[-1].state
    assert (t.consecutive_successes, t.consecutive_failures) == (1, 0)
    t = run(HEALTHY, "PPF")[-1].state
    assert (t.consecutive_successes, t.consecutive_failures) == (0, 1)


# -- intervals and backoff -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "results", "intervals"),
    [
        (HealthState(), "P", [300]),  # healthy, steady
        (HealthState(), "FFF", [120, 240, 480]),  # an unknown proxy's first failure makes it unhealthy: back-off
        (HEALTHY, "PFP", [300, 30, 300]),
        (UNHEALTHY, "PP", [30, 300]),  # recovering fast, then steady
        # Backoff ×2 from 120 s, capped at 3600 s.
        (HEALTHY, "FFFFFFFFF", [30, 30, 120, 240, 480, 960, 1920, 3600, 3600]),
        (UNHEALTHY, "PF", [30, 240]),  # a pass while unhealthy does not reset the backoff
    ],
)
def test_intervals(start, results, intervals):
    assert gaps(run(start, results)) == intervals


def test_backoff_follows_the_policy():
    policy = HealthPolicy(fall=1, failing_interval=10, backoff_factor=3, max_interval=100, jitter=0)
    assert gaps(run(HEALTHY, "FFFFF", policy)) == [10, 30, 90, 100, 100]


def test_becoming_healthy_resets_the_backoff():
    t = run(UNHEALTHY, "FFFPPF")[-1]
    assert t.state.failing_streak == 0 and t.state.state == "healthy"


# -- jitter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("results", "base"), [("P", 300), ("F", 30), ("FFFF", 240)])
def test_jitter_stays_within_bounds_and_is_used(results, base):
    start = HealthState() if results == "P" else HEALTHY
    last = [gaps(run(start, results, HealthPolicy(jitter=0.1), seed))[-1] for seed in range(300)]
    assert all(base * 0.9 <= g <= base * 1.1 for g in last)
    assert min(last) < base * 0.95 and max(last) > base * 1.05


def test_same_seed_same_transition():
    assert run(HEALTHY, "FFFPP", HealthPolicy(), seed=3) == run(HEALTHY, "FFFPP", HealthPolicy(), seed=3)


def test_retry_after_unavailable():
    policy = HealthPolicy(fast_interval=30, jitter=0.1)
    assert retry_after_unavailable(T0, policy) == T0 + timedelta(seconds=30)
    jittered = retry_after_unavailable(T0, policy, random.Random(1))
    assert T0 + timedelta(seconds=27) <= jittered <= T0 + timedelta(seconds=33)


# -- the policy itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rise", 0),
        ("fall", 0),
        ("interval", 0),
        ("fast_interval", -1),
        ("failing_interval", 0),
        ("max_interval", 0),
        ("backoff_factor", 0.5),
        ("jitter", 1.0),
        ("jitter", -0.1),
    ],
)
def test_bad_policy_values_name_the_key(field, value):
    with pytest.raises(ConfigError, match=rf"^health\.{field}: "):
        HealthPolicy(**{field: value})


def test_every_policy_field_has_a_default_and_a_doc():
    docs = HealthPolicy.field_docs()
    assert list(docs) == [
        "rise",
        "fall",
        "interval",
        "fast_interval",
        "failing_interval",
        "backoff_factor",
        "max_interval",
        "jitter",
    ]
    assert all(doc.endswith(".") and "\n" not in doc for doc in docs.values())
    assert HealthPolicy() == HealthPolicy(2, 3, 300.0, 30.0, 120.0, 2.0, 3600.0, 0.1)
