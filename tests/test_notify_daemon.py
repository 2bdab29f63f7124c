"""Notifications from a real daemon: the installed ``proxycheck run`` (SQLite) checks real proxies of
the loopback world with a judge of this test's own, and sends ``[notify]`` messages to a webhook
receiver on 127.0.0.1 (tests/notify_receiver.py). The judge is stopped and started twice, as
tests/test_daemon_judge.py does, and a ban target is switched to answer everyone 429 and back.

Proven: one message per transition (checker degraded, checker OK, twice; the target unable to
judge and judging again), each signed with the configured secret; the receiver's first two 500s
are retried, each a line in the daemon's log; no proxy password and no secret in any body or log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from daemons import RestartableJudge, label_of, running_daemon, status_json, wait_until
from notify_receiver import Receiver
from world.build import config_toml
from world.faults import AlikeTarget

pytestmark = pytest.mark.world

PROXIES = ["squid-anonymous", "squid-auth-right-password", "microsocks-auth-right-password", "squid-auth-wrong-password"]
SECRET = "n0tify-secret-" + "y" * 24
ALIKE_HOST = "127.0.17.5"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def alike():
    t = AlikeTarget(ALIKE_HOST).start()
    yield t
    t.stop()


@pytest.fixture
def judge(restartable_judge: RestartableJudge) -> RestartableJudge:
    return restartable_judge


def write_config(world, judge, alike: AlikeTarget, receiver: Receiver, tmp_path: Path) -> Path:
    csv = tmp_path / "proxies.csv"
    csv.write_text("url,label\n" + "".join(f"{world.by_name(n).url},{label_of(n)}\n" for n in PROXIES))
    config = tmp_path / "proxycheck.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n' + config_toml(judge.judge, world.ca_file)
        + f'\n[[targets.ban]]\nname = "everyone429"\nurl = "{alike.url}/recaptcha/api2/anchor"\npreset = "recaptcha"\n'
        + "\n[probes.ban]\nevery = 0\n"  # the ban probe on every check: a target's trouble shows within seconds
        + f'\n[daemon]\nsources = ["{csv}"]\ndispatch_interval = 0.2\ndrain_grace = 5.0\nheartbeat_interval = 0.5\n'
        + "\n[health]\ninterval = 2.0\nfast_interval = 2.0\nfailing_interval = 2.0\nmax_interval = 4.0\n"
        + "\n[guard.testsvc]\nmax_proxy_errors = 2\nwindow = 600\n"
        + f'\n[notify]\nwebhook_url = "{receiver.url}"\nsecret = "{SECRET}"\nmin_interval = 0\nretry_backoff = 0.1\n'
    )
    config.chmod(0o600)
    return config


def events(receiver: Receiver, subject: str) -> list[str]:
    return [m["event"] for m in receiver.delivered() if m["subject"] == subject]


def passwords(world) -> set[str]:
    return {urlsplit(world.by_name(n).url).password for n in PROXIES} - {None}


def test_one_signed_message_per_transition(world, judge, alike, receiver, tmp_path):
    config = write_config(world, judge, alike, receiver, tmp_path)
    receiver.statuses = [500, 500]  # the first message is refused twice, then taken
    with running_daemon(config) as daemon:
        healthy = [label_of(n) for n in PROXIES[:3]]
        wait_until(lambda: all(r["state"] == "healthy" for r in status_json(config)["proxies"] if r["label"] in healthy),
                   30, "the healthy proxies checked healthy")
        for cycle in range(2):
            judge.kill()
            wait_until(lambda: events(receiver, "checker")[-1:] == ["checker_degraded"], 15, "a checker_degraded message")
            time.sleep(1.0)  # more observations while degraded: no second message
            judge.start()
            wait_until(lambda: events(receiver, "checker")[-1:] == ["checker_ok"], 15, "a checker_ok message")
        assert events(receiver, "checker") == ["checker_degraded", "checker_ok"] * 2

        alike.answer = 429
        wait_until(lambda: events(receiver, "target:everyone429") == ["target_unable"], 30, "a target_unable message")
        alike.answer = None
        wait_until(lambda: events(receiver, "target:everyone429") == ["target_unable", "target_judging"], 30,
                   "a target_judging message")

        # Two proxy errors a worker reports for service "testsvc" spend its budget of 2: one message.
        # (On the proxy that fails anyway, so the fleet's healthy fraction does not change.)
        bad = world.by_name(PROXIES[3]).url
        worker = ("import proxycheck, sys\nfor _ in range(2):\n"
                  "    proxycheck.report(sys.argv[1], 'ERROR_PROXY_CONNECT_REFUSED', service='testsvc')\n")
        ran = subprocess.run([sys.executable, "-c", worker, bad], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PROXYCHECK_CONFIG": str(config)})
        assert ran.returncode == 0, ran.stderr
        wait_until(lambda: events(receiver, "guard:testsvc") == ["guard_tripped"], 30, "a guard_tripped message")
        time.sleep(1.5)  # a few more observations: nothing new
        delivered = receiver.delivered()
    code, err = daemon.stop()
    assert code == 0, err
    subjects = [m["subject"] for m in delivered]
    assert subjects.count("checker") == 4 and subjects.count("target:everyone429") == 2, delivered
    assert subjects.count("guard:testsvc") == 1, delivered
    assert set(subjects) <= {"checker", "target:everyone429", "guard:testsvc"}, delivered  # 3 of 4 healthy: the fleet is fine
    tripped = next(m for m in delivered if m["event"] == "guard_tripped")
    assert "testsvc" in tripped["summary"], tripped
    unable = next(m for m in delivered if m["event"] == "target_unable")
    assert "everyone429" in unable["summary"] and "To fix:" in unable["summary"]
    assert [r.status for r in receiver.got[:3]] == [500, 500, 200] and receiver.got[0].body == receiver.got[2].body
    assert all(r.verifies(SECRET.encode()) for r in receiver.got)
    assert err.count("(answered HTTP 500), attempt") == 2, err
    for secret in passwords(world) | {SECRET, "T0KEN-IN-PATH"}:
        assert all(secret.encode() not in r.body for r in receiver.got), secret
        assert secret not in err
