"""Never blame a proxy for our own trouble, at every moment: the judge dies in the middle of things.

Real squid, tinyproxy-free healthy proxies from the loopback world and a real judge of this test's
own (the world's judge is shared by every test), the installed ``proxycheck run`` as a subprocess
on SQLite. The judge is killed at one moment of a round, five times per test:

- ``idle``: no proxy is leased (the next round's dispatch will find the judge dead);
- ``in_flight``: proxies are leased, their probes are running;
- ``after_write``: a check was just stored, others are still in flight or waiting for their
  confirming self-test.

Each time: no failure is stored for a healthy proxy, ``status --json`` says the checker is
degraded within 5 s, and after the judge is restarted on the same ports every healthy proxy is
checked healthy again with no help. A proxy that really is broken (``refused``) is still blamed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from daemons import RestartableJudge, label_of, running_daemon, status_json, wait_until
from daemons import sqlite_query as query
from world.build import config_toml

from proxycheck.judge import Judge

HEALTHY = ["squid-anonymous", "squid-elite", "squid-auth-right-password", "microsocks", "microsocks-auth-right-password",
           "pproxy-socks4"]
BROKEN = ["refused"]
REPEATS = 5


@pytest.fixture
def judge(restartable_judge: RestartableJudge) -> RestartableJudge:
    return restartable_judge


def write_config(world, judge: Judge, tmp_path: Path) -> Path:
    csv = tmp_path / "proxies.csv"
    csv.write_text("url,label\n" + "".join(f"{world.by_name(n).url},{label_of(n)}\n" for n in HEALTHY + BROKEN))
    config = tmp_path / "proxycheck.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n' + config_toml(judge, world.ca_file)
        + f'\n[daemon]\nsources = ["{csv}"]\ndispatch_interval = 0.2\ndrain_grace = 5.0\nheartbeat_interval = 0.5\n'
        + "\n[health]\ninterval = 2.0\nfast_interval = 2.0\nfailing_interval = 2.0\nmax_interval = 4.0\n"
    )
    return config


def healthy_failures(db: Path) -> list[tuple]:
    labels = ",".join(f"'{label_of(n)}'" for n in HEALTHY)
    return query(db, "SELECT p.label, c.code, c.reason, c.detail FROM checks c JOIN proxies p ON p.id = c.proxy_id "
                     f"WHERE NOT c.healthy AND p.label IN ({labels})")


def wait_for_moment(db: Path, moment: str) -> None:
    """Poll the database (every few ms) until the round is at ``moment``."""
    deadline = time.monotonic() + 20
    last_id = query(db, "SELECT coalesce(max(id), 0) FROM checks")[0][0]
    while time.monotonic() < deadline:
        leased = query(db, "SELECT count(*) FROM proxies WHERE lease_owner IS NOT NULL")[0][0]
        if moment == "idle" and leased == 0:
            return
        if moment == "in_flight" and leased > 0:
            return
        if moment == "after_write" and query(db, "SELECT coalesce(max(id), 0) FROM checks")[0][0] > last_id:
            return
        time.sleep(0.005)
    raise AssertionError(f"the round never reached the moment {moment!r}")


def checker_state(config: Path) -> str:
    return status_json(config)["summary"]["checker"]["state"]


@pytest.mark.parametrize("moment", ["idle", "in_flight", "after_write"])
def test_a_dying_judge_is_never_blamed_on_healthy_proxies(world, judge, tmp_path, moment):
    config = write_config(world, judge.judge, tmp_path)
    db = tmp_path / "state" / "proxycheck.db"
    with running_daemon(config) as daemon:
        wait_until(lambda: all(r["state"] == "healthy" for r in status_json(config)["proxies"] if r["label"] != label_of("refused")),
                   30, "every healthy proxy checked healthy")
        for _ in range(REPEATS):
            wait_for_moment(db, moment)
            judge.kill()
            killed = time.monotonic()
            wait_until(lambda: checker_state(config) == "degraded", 5, "status --json to show the checker degraded")
            assert time.monotonic() - killed < 5.0
            time.sleep(1.0)  # checks in flight at the kill settle meanwhile
            assert healthy_failures(db) == []
            judge.start()
            back = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            wait_until(lambda: checker_state(config) == "ok", 10, "the checker to recover by itself")
            labels = ",".join(f"'{label_of(n)}'" for n in HEALTHY)
            wait_until(lambda: query(db, "SELECT count(DISTINCT p.id) FROM checks c JOIN proxies p ON p.id = c.proxy_id "
                                         f"WHERE c.healthy AND p.label IN ({labels}) AND c.checked_at >= '{back}'")[0][0]
                       == len(HEALTHY), 20, "every healthy proxy checked again after the judge came back")
        assert healthy_failures(db) == []
        rows = {r["label"]: r for r in status_json(config)["proxies"]}
        assert all(rows[label_of(n)]["state"] == "healthy" for n in HEALTHY), rows
        assert (rows[label_of("refused")]["state"], rows[label_of("refused")]["code"]) == ("unhealthy", 25)
    code, err = daemon.code, daemon.err
    assert code == 0, err
    assert err.count("checker degraded, no proxy will be judged") >= REPEATS, err
    assert "proxycheck doctor" in err
    degraded = [m for m in daemon.notify.messages if "checker DEGRADED" in m]
    assert degraded, daemon.notify.messages
