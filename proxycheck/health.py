"""The health state machine: state + one check's verdict + clock -> new state and next check.

Rules:
1. Pure: no I/O, no global clock, no global randomness. The caller passes ``now`` and an
   ``random.Random``; the same inputs give the same ``Transition``.
2. Three states. ``unknown`` (never judged, or re-enabled), ``healthy``, ``unhealthy``.
   Counters follow Envoy/Consul: each result increments its own streak and zeroes the other.
3. From ``unknown`` one check decides (Envoy marks a host healthy after a single success during
   startup): one pass makes it healthy, one failure unhealthy. A never-verified proxy has no
   record of health to protect from a blip, and ``status`` should name its failure at once;
   ``fall`` protects proxies that *were* healthy.
4. A definitive code (``verdict.DEFINITIVE_CODES``: 29 transparent, 49 not authorised) makes an
   unknown or healthy proxy unhealthy at once; retrying does not fix those.
5. ``unhealthy`` needs ``rise`` consecutive passes to become healthy again.
6. ``checker_unavailable`` results never reach ``advance`` (they say nothing about the proxy);
   the caller reschedules with ``retry_after_unavailable``.

``code``/``reason`` on a state are the latest failure's; a pass that leaves (or makes) the proxy
healthy clears them, while an unhealthy proxy keeps them until it has recovered, so ``status``
can always say why a proxy is not served.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Literal

from .config_keys import check_fields, key
from .verdict import DEFINITIVE_CODES

StateName = Literal["unknown", "healthy", "unhealthy"]
STATES: tuple[StateName, ...] = ("unknown", "healthy", "unhealthy")


@dataclass(frozen=True)
class HealthPolicy:
    """When a proxy changes state and when it is checked next (the ``[health]`` config section).

    The next check is ``now + base × (1 + u)`` with ``u`` uniform in ``[-jitter, +jitter]`` and

    - ``base = interval`` while healthy and no failure streak is in progress;
    - ``base = fast_interval`` while the state may be about to change: ``unknown``, healthy with
      ``0 < consecutive_failures < fall``, or unhealthy with ``0 < consecutive_successes < rise``;
    - ``base = min(failing_interval × backoff_factor^(failing_streak − 1), max_interval)`` after a
      failure while unhealthy (``failing_streak`` = failures since the proxy became unhealthy,
      1 for the failure that made it so).

    The cap applies before jitter, so an interval can exceed ``max_interval`` by ``jitter``.
    """

    rise: int = key("Consecutive passes an unhealthy proxy needs to become healthy again.", 2, low=1, high=100)
    fall: int = key(
        "Consecutive failures that make a healthy proxy unhealthy (an unknown one fails at once).", 3, low=1, high=100
    )
    interval: float = key("Seconds between checks of a healthy proxy in steady state.", 300.0, low=1, high=86400)
    fast_interval: float = key("Seconds between checks while the state may change.", 30.0, low=1, high=86400)
    failing_interval: float = key("Seconds until the first re-check once a proxy is unhealthy.", 120.0, low=1, high=86400)
    backoff_factor: float = key("Each further failure while unhealthy multiplies the interval.", 2.0, low=1, high=100)
    max_interval: float = key("Cap in seconds on the backed-off interval of an unhealthy proxy.", 3600.0, low=1, high=86400)
    jitter: float = key("Every interval varies by up to ± this fraction so checks do not bunch up.", 0.1, low=0, high=0.9)

    def __post_init__(self) -> None:
        check_fields(self, "health.")  # ranges as declared above; the config file's checks too

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Field name -> its one-line doc (for a sample config file and ``--help`` text)."""
        return {f.name: f.metadata["doc"] for f in fields(cls)}


@dataclass(frozen=True)
class HealthState:
    """A proxy's health as stored with it. ``changed_at`` is None until the first change."""

    state: StateName = "unknown"
    consecutive_successes: int = 0
    consecutive_failures: int = 0
    failing_streak: int = 0
    code: int | None = None
    reason: str | None = None
    changed_at: datetime | None = None


@dataclass(frozen=True)
class Transition:
    state: HealthState
    next_check_at: datetime
    changed: bool  # state.state differs from the state before


def advance(
    state: HealthState,
    *,
    healthy: bool,
    code: int | None,
    reason: str | None,
    now: datetime,
    policy: HealthPolicy,
    rng: random.Random,
) -> Transition:
    """Apply one check's verdict. ``healthy=False`` with ``code=None`` (internal error) is an
    ordinary, non-definitive failure."""
    if healthy:
        new = _on_pass(state, policy)
    else:
        new = _on_fail(state, code, reason, policy)
    changed = new.state != state.state
    if changed:
        new = replace(new, changed_at=now)
    return Transition(new, now + _jittered(_base_interval(new, healthy, policy), policy, rng), changed)


def _on_pass(s: HealthState, policy: HealthPolicy) -> HealthState:
    successes = s.consecutive_successes + 1
    if s.state == "unhealthy" and successes < policy.rise:
        return replace(s, consecutive_successes=successes, consecutive_failures=0)
    return replace(
        s,
        state="healthy",
        consecutive_successes=successes,
        consecutive_failures=0,
        failing_streak=0,
        code=None,
        reason=None,
    )


def _on_fail(s: HealthState, code: int | None, reason: str | None, policy: HealthPolicy) -> HealthState:
    failures = s.consecutive_failures + 1
    s = replace(s, consecutive_successes=0, consecutive_failures=failures, code=code, reason=reason)
    if s.state == "unhealthy":
        return replace(s, failing_streak=s.failing_streak + 1)
    if s.state == "unknown" or failures >= policy.fall or code in DEFINITIVE_CODES:
        return replace(s, state="unhealthy", failing_streak=1)
    return s  # healthy, with a failure streak in progress


def _base_interval(s: HealthState, last_passed: bool, policy: HealthPolicy) -> float:
    if s.state == "unhealthy":
        if last_passed:
            return policy.fast_interval  # recovering: rise not reached yet
        backoff = policy.failing_interval * policy.backoff_factor ** (s.failing_streak - 1)
        return min(backoff, policy.max_interval)
    if s.state == "healthy" and s.consecutive_failures == 0:
        return policy.interval
    return policy.fast_interval


def _jittered(seconds: float, policy: HealthPolicy, rng: random.Random) -> timedelta:
    return timedelta(seconds=seconds * (1 + rng.uniform(-policy.jitter, policy.jitter)))


def retry_after_unavailable(
    now: datetime, policy: HealthPolicy, rng: random.Random | None = None
) -> datetime:
    """Next check after ``checker_unavailable`` (our side failed): ``fast_interval``, jittered if
    ``rng`` is given. The proxy's state is not touched."""
    seconds = policy.fast_interval
    if rng is not None:
        return now + _jittered(seconds, policy, rng)
    return now + timedelta(seconds=seconds)
