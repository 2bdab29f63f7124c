"""Probe schedules: which probes a check runs, and which carry their last result forward.

Rules:
1. Each probe runs at most every ``every`` seconds on one proxy (``ProbeSpec.every``, or
   ``[probes.<name>].every``; 0: every check). Cheap probes (TCP connect, the judge) run on
   every check; costly ones (images, the ban target) less often, because fetching a captcha
   provider's pages through the same exit every few minutes can *cause* the ban we look for.
2. A probe is *due* when it has no last result, or its last result is at least
   ``every × (1 − jitter × u)`` old, where ``u`` in [0, 1) is a hash of the proxy, the probe and
   the last run's time: each proxy comes due at its own moment, so a fleet checked together at
   start does not hit a provider together every ``every`` seconds. Pure and repeatable.
3. A probe that is not due carries its last result forward (``carried``, with its age): the
   result stands while it is fresh. A carried failure stays the verdict until the probe runs
   again, so a banned exit is not re-fetched from the provider on every check.
4. The checker still runs probes in registry order and stops at the first failure, carried or
   not: a cheap probe's failure takes the proxy out at once, whatever the costly ones said.
   A proxy is healthy when every probe's latest result (run now or carried, thus fresh) passes.
5. The one-shot ``check`` CLI passes no last results: everything runs.
6. ``HostRateLimit``: a token bucket per target host, shared by every check in the process,
   for the probes whose spec is ``rate_limited``. The probe's tokens (one per target URL it
   fetches) are taken *before* its deadline starts, so waiting for the limit never turns into a
   timeout blamed on the proxy. It spaces requests (burst: one second's worth); it does not
   coordinate several daemon processes (each has its own bucket).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from ..result import LastRun, ProbeOutcome
from ..target_spec import ProbeSchedule
from .base import ProbeSpec, Settings


def schedule_for(settings: Settings, spec: ProbeSpec) -> ProbeSchedule:
    """The probe's schedule: ``[probes.<name>]`` when the file sets it, else the spec's own."""
    return settings.probes.schedules.get(spec.name) or ProbeSchedule(every=spec.every, jitter=spec.jitter)


def spread(proxy_key: str, probe: str, ran_at: datetime) -> float:
    """``u`` of rule 2: in [0, 1), stable for one proxy, probe and run."""
    digest = hashlib.blake2b(f"{proxy_key}|{probe}|{ran_at.isoformat()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_due(schedule: ProbeSchedule, last: LastRun | None, now: datetime, *, proxy_key: str, probe: str) -> bool:
    """Rule 2."""
    if last is None or schedule.every <= 0:
        return True
    age = (now - last.ran_at).total_seconds()
    return age >= schedule.every * (1 - schedule.jitter * spread(proxy_key, probe, last.ran_at))


def due_probes(
    settings: Settings, specs: tuple[ProbeSpec, ...], last: Mapping[str, LastRun], now: datetime, proxy_key: str
) -> list[str]:
    """Names of the probes a check at ``now`` runs (rule 2), in registry order."""
    return [s.name for s in specs if is_due(schedule_for(settings, s), last.get(s.name), now, proxy_key=proxy_key, probe=s.name)]


def carried(last: LastRun, now: datetime) -> ProbeOutcome:
    """The last result, carried forward (rule 3)."""
    return replace(last.outcome, carried=True, age_s=max(0.0, (now - last.ran_at).total_seconds()), skipped=False)


class HostRateLimit:
    """Rule 6: at most ``rate`` requests per second to each host, across the process's checks.
    GCRA (a token bucket kept as one "theoretical arrival time" per host): no lock is needed,
    since reading and moving a host's time never awaits."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        self.rate = rate
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.burst = max(1.0, rate) * self.interval  # one second's worth may go at once
        self._next: dict[str, float] = {}
        self._clock, self._sleep = clock, sleep
        self.waited = 0.0  # seconds spent waiting, all hosts (bench, metrics)

    def delay(self, host: str) -> float:
        """Reserve one request to ``host``; how long the caller must wait before sending it."""
        if self.interval == 0:
            return 0.0
        now = self._clock()
        tat = max(self._next.get(host, now), now)
        self._next[host] = tat + self.interval
        return max(0.0, tat + self.interval - self.burst - now)

    async def acquire(self, hosts: list[str]) -> None:
        wait = max((self.delay(h) for h in hosts), default=0.0)
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)


def target_hosts(settings: Settings, spec: ProbeSpec) -> list[str]:
    """One entry per URL the probe fetches (its ``[targets]`` keys; a list key gives several)."""
    return [(urlsplit(url).hostname or "").lower() for key_name in spec.target_keys for url in settings.targets.urls(key_name)]


__all__ = ["HostRateLimit", "LastRun", "carried", "due_probes", "is_due", "schedule_for", "spread", "target_hosts"]
