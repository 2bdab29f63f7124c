"""Probe schedules on a fake clock (pure): which probes a check runs, which carry, the rate limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from proxycheck.config import ProbeSchedule, Settings, settings_from_dict
from proxycheck.probes import REGISTRY
from proxycheck.probes.schedule import HostRateLimit, carried, due_probes, is_due, schedule_for, spread, target_hosts
from proxycheck.result import LastRun, ProbeOutcome

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NAMES = [s.name for s in REGISTRY]
CHEAP = ["tcp_connect", "anonymity", "ssl", "long_get"]
KEY = "http://203.0.113.7:3128"


def run_all(last: dict[str, LastRun], at: datetime, names: list[str], ok: bool = True) -> None:
    for name in names:
        last[name] = LastRun(ProbeOutcome(name, ok, elapsed_ms=12.0), at)


def test_the_defaults_each_probe_declares():
    every = {s.name: schedule_for(Settings(), s).every for s in REGISTRY}
    assert every == {"tcp_connect": 0, "anonymity": 0, "ssl": 0, "long_get": 0, "images": 900, "ban": 1800}
    assert schedule_for(Settings(), REGISTRY[-1]).jitter == 0.2


def test_a_first_check_runs_everything_and_the_next_only_the_cheap_probes():
    last: dict[str, LastRun] = {}
    assert due_probes(Settings(), REGISTRY, last, T0, KEY) == NAMES
    run_all(last, T0, NAMES)
    assert due_probes(Settings(), REGISTRY, last, T0 + timedelta(seconds=300), KEY) == CHEAP


def test_each_probe_runs_at_its_own_cadence_over_two_hours():
    """Checks every 5 minutes for 2 hours, on a fake clock: how many times each probe ran."""
    last: dict[str, LastRun] = {}
    runs = dict.fromkeys(NAMES, 0)
    for i in range(25):  # t = 0, 300, ..., 7200
        now = T0 + timedelta(seconds=300 * i)
        due = due_probes(Settings(), REGISTRY, last, now, KEY)
        run_all(last, now, due)
        for name in due:
            runs[name] += 1
    assert runs == {"tcp_connect": 25, "anonymity": 25, "ssl": 25, "long_get": 25, "images": 9, "ban": 5}


def test_a_probe_is_due_once_its_result_is_every_seconds_old_or_jitter_sooner():
    sched = ProbeSchedule(every=1800, jitter=0.2)
    last = LastRun(ProbeOutcome("ban", True), T0)
    u = spread(KEY, "ban", T0)
    threshold = 1800 * (1 - 0.2 * u)
    assert 1440 < threshold <= 1800
    assert not is_due(sched, last, T0 + timedelta(seconds=threshold - 1), proxy_key=KEY, probe="ban")
    assert is_due(sched, last, T0 + timedelta(seconds=threshold), proxy_key=KEY, probe="ban")
    assert is_due(sched, None, T0, proxy_key=KEY, probe="ban")  # never ran
    assert is_due(ProbeSchedule(every=0), last, T0, proxy_key=KEY, probe="ban")  # every check


def test_jitter_spreads_a_fleet_checked_together():
    values = {spread(f"http://203.0.113.{n}:3128", "ban", T0) for n in range(200)}
    assert len(values) == 200 and all(0 <= v < 1 for v in values)
    assert min(values) < 0.1 and max(values) > 0.9  # spread over the whole window
    assert spread(KEY, "ban", T0) == spread(KEY, "ban", T0)  # repeatable


def test_the_config_overrides_a_probes_schedule():
    s = settings_from_dict({"probes": {"images": {"every": 0}, "ban": {"every": 600}}}, "t.toml")
    last: dict[str, LastRun] = {}
    run_all(last, T0, NAMES)
    assert due_probes(s, REGISTRY, last, T0 + timedelta(seconds=300), KEY) == [*CHEAP, "images"]
    assert due_probes(s, REGISTRY, last, T0 + timedelta(seconds=600), KEY) == NAMES
    ban = next(spec for spec in REGISTRY if spec.name == "ban")
    assert schedule_for(s, ban) == ProbeSchedule(every=600, jitter=0.2)  # jitter: the probe's own


def test_a_carried_result_says_so_with_its_age():
    stored = LastRun(ProbeOutcome("images", False, 35, "image_corrupted", "cut short", 40.0), T0)
    out = carried(stored, T0 + timedelta(seconds=420))
    assert (out.ok, out.code, out.carried, out.age_s) == (False, 35, True, 420.0)
    d = out.as_dict()
    assert d["carried"] is True and d["age_s"] == 420 and d["reason"] == "image_corrupted"
    assert "carried" not in ProbeOutcome("images", True).as_dict()


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


async def test_the_host_rate_limit_spaces_requests_per_host():
    t = FakeTime()
    limit = HostRateLimit(2.0, clock=t.clock, sleep=t.sleep)
    for _ in range(4):
        await limit.acquire(["a.example"])
    assert t.slept == [0.5, 0.5]  # a burst of 2 (one second's worth), then 2 per second
    await limit.acquire(["b.example"])  # another host has its own bucket
    assert t.slept == [0.5, 0.5]
    t.now += 10  # idle: the bucket refills, but no more than one burst
    await limit.acquire(["a.example", "a.example"])
    await limit.acquire(["a.example"])
    assert t.slept == [0.5, 0.5, 0.5]
    assert limit.waited == pytest.approx(1.5)


async def test_no_limit_never_waits():
    t = FakeTime()
    limit = HostRateLimit(0.0, clock=t.clock, sleep=t.sleep)
    for _ in range(100):
        await limit.acquire(["a.example"])
    assert t.slept == []


def test_target_hosts_one_per_url_fetched():
    images = next(spec for spec in REGISTRY if spec.name == "images")
    assert target_hosts(Settings(), images) == ["www.google.com", "www.gstatic.com"]
    assert [s.name for s in REGISTRY if s.rate_limited] == ["ssl", "images", "ban"]
