"""Probe schedules end to end: the real checker through a real relay to the world's judge, the
daemon's claim and fenced write-back on a migrated database. Costly probes carry their result
between runs; a cheap probe's failure takes the proxy out on the check it happens in."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from proxycheck import health
from proxycheck.checker import Checker
from proxycheck.config import load_settings
from proxycheck.proxy import parse_proxy_url
from proxycheck.store import add_proxies, claim_due, make_engine, migrate, record_results
from proxycheck.store import probe_results
from proxycheck.store._rows import utcnow
from proxycheck.store.models import CheckRow, ProxyRow
from test_wire_faults import EGRESS, HOST, replace_with
from world.scripted import Script, ScriptedProxy

pytestmark = pytest.mark.world
ALL = ["tcp_connect", "anonymity", "ssl", "long_get", "images", "ban"]


@pytest.fixture
def settings(world):
    s = load_settings(world.config_path)
    return dataclasses.replace(s, timeouts=dataclasses.replace(s.timeouts, read=1.0, probe=5.0))


def _claim(engine, at):
    with engine.begin() as conn:
        conn.execute(update(ProxyRow).values(next_check_at=at - timedelta(seconds=1), lease_expires_at=None))
    (claim,) = claim_due(engine, "sched-test", 10, 60, now=at)
    return claim


def _record(engine, settings, claim, result):
    t = health.advance(claim.state, healthy=bool(result.healthy), code=result.code, reason=result.reason,
                       now=result.started_at, policy=settings.health, rng=random.Random(1))
    assert record_results(engine, [(claim, result, t)], "sched-test") == [True]
    with engine.begin() as conn:
        return conn.execute(select(ProxyRow.state)).scalar_one(), probe_results.ran_at_of(conn, claim.proxy_id)


async def test_costly_probes_carry_and_a_cheap_failure_takes_the_proxy_out_at_once(world, settings, tmp_path):
    url = f"sqlite:///{tmp_path / 'sched.db'}"
    migrate.upgrade(url)
    engine = make_engine(url, writer=True)
    checker = Checker(settings)
    status = await checker.preflight()
    assert status.ok, status.reason
    forwarded: list[bytes] = []

    async def count(raw: bytes, writer) -> None:  # honest, but counts the plain-HTTP answers relayed
        forwarded.append(raw.split(b"\r\n\r\n", 1)[0])
        writer.write(raw)

    async with ScriptedProxy(HOST, EGRESS, Script(response=count)) as relay:
        add_proxies(engine, [parse_proxy_url(f"http://{HOST}:{relay.port}")])

        # First check: nothing known yet, every probe runs.
        claim = _claim(engine, utcnow())
        assert claim.last_probes == {}
        first = await checker.check(claim.proxy, status.own_ips, last=claim.last_probes)
        assert first.healthy, first.detail
        assert not any(o.carried for o in first.probes)
        state, ran = _record(engine, settings, claim, first)
        assert state == "healthy" and sorted(ran) == sorted(ALL)

        # Next check: images and ban are not due, so they carry their fresh passes.
        claim = _claim(engine, utcnow())
        assert sorted(claim.last_probes) == sorted(ALL)
        images_before = sum(b"image/png" in head for head in forwarded)
        assert images_before == 1  # the plain-HTTP image of the first check
        second = await checker.check(claim.proxy, status.own_ips, last=claim.last_probes)
        assert second.healthy, second.detail
        assert {o.name for o in second.probes if o.carried} == {"images", "ban"}
        assert all(o.age_s is not None and o.age_s < 60 for o in second.probes if o.carried)
        assert sum(b"image/png" in head for head in forwarded) == images_before  # no image fetched again
        state, ran2 = _record(engine, settings, claim, second)
        assert ran2["images"] == ran["images"] and ran2["ban"] == ran["ban"]  # not re-run: not re-stored
        assert ran2["anonymity"] > ran["anonymity"]
        with engine.begin() as conn:
            history = conn.execute(select(CheckRow.probes).order_by(CheckRow.id.desc())).scalars().first()
        assert {p["name"] for p in history if p.get("carried")} == {"images", "ban"}
        assert second.as_dict()["probes"][-1]["carried"] is True

        # The proxy now garbles the judge's answer: the cheap anonymity probe fails on this very
        # check, though images and ban passed minutes ago and are not due.
        relay.script = Script(response=replace_with(b"HELLO WORLD\r\n\r\n"))
        claim = _claim(engine, utcnow())
        third = await checker.check(claim.proxy, status.own_ips, last=claim.last_probes)
        assert third.healthy is False and third.probe == "anonymity"
        assert [o.name for o in third.probes if o.skipped] == ["ssl", "long_get", "images", "ban"]
        policy = dataclasses.replace(settings.health, fall=1)  # one failed check takes it out
        state, _ = _record(engine, dataclasses.replace(settings, health=policy), claim, third)
        assert state == "unhealthy"
    engine.dispose()


async def test_the_one_shot_check_runs_everything(world, settings):
    checker = Checker(settings)
    status = await checker.preflight()
    async with ScriptedProxy(HOST, EGRESS, Script()) as relay:
        result = await checker.check(parse_proxy_url(f"http://{HOST}:{relay.port}"), status.own_ips)
    assert result.healthy and [o.name for o in result.probes] == ALL
    assert not any(o.carried or o.skipped for o in result.probes)


async def test_waiting_for_the_host_rate_limit_is_not_the_probes_time(world, settings):
    """One request per second to the judge host, and a 1.5 s probe deadline: the images probe
    waits about 2 s for its two tokens, longer than its deadline, and still passes."""
    tight = dataclasses.replace(
        settings,
        timeouts=dataclasses.replace(settings.timeouts, connect=1.0, read=1.0, probe=1.5),
        probes=dataclasses.replace(settings.probes, max_requests_per_host=1.0),
    )
    checker = Checker(tight)
    status = await checker.preflight()
    async with ScriptedProxy(HOST, EGRESS, Script()) as relay:
        result = await checker.check(parse_proxy_url(f"http://{HOST}:{relay.port}"), status.own_ips)
    assert result.healthy, result.detail
    assert checker.rate_limit.waited > tight.timeouts.probe  # it did wait, and longer than a deadline
    images = next(o for o in result.probes if o.name == "images")
    assert images.ok and images.elapsed_ms < 1500  # the wait is not in the probe's own time
