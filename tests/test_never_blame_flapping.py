"""Never blame, in time: short outages of ours, again and again, blame no healthy proxy.

50 healthy proxies (one real squid listening on 50 addresses, each its own proxy row), the
installed ``proxycheck run`` as a subprocess on SQLite, ``[health] fall = 1`` (one stored failure
would make a proxy unhealthy), a real judge of this test's own. For 60 s, something of *ours*
fails for 1-3 s at a time, every few seconds, starting and ending between heartbeats:

- ``judge_killed``: the judge is killed and restarted on the same ports;
- ``ban_429``: the ban target answers 429 (the recaptcha preset's ban) to every caller, the
  checker's own direct request included;
- ``target_503``: a target answers 503 to everyone; it serves both the long GET and the ban
  target, so both a probe's failure and a ban target's error meet it.

Throughout, ``status --json`` is polled: no healthy proxy is ever shown unhealthy; at the end no
failure was ever stored for one (the checks table), and within one ``[health].interval`` of the
trouble ending every proxy has been checked healthy again. While the trouble lasts, checking
goes on (checks are stored during the flapping). For ``ban_429``, no proxy is ever banned on the
target either. What saves them is checker.py rule 6 (a direct control request, then a second
try through the proxy); with ``PROXYCHECK_UNSAFE_CONFIRM=0`` (that rule off, for this
demonstration only) each of these tests fails.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import pytest
from cli import run_json
from daemons import RestartableJudge, running_daemon
from daemons import sqlite_query as query
from world import software
from world.faults import AlikeTarget

from proxycheck.world import free_port, wait_all

pytestmark = pytest.mark.world

N_PROXIES = 50
LISTEN = "127.0.16.{}"  # the fleet's squid listens on 127.0.16.1-50, one proxy row each
EGRESS = "127.0.17.1"  # and leaves from here: the judge never sees the checker's 127.0.0.1
TARGET_HOST = "127.0.17.2"
INTERVAL = 6.0  # [health].interval
PROBE_DEADLINE = 8.0  # [timeouts].probe
FLAP_SECONDS = 60.0
OUTAGE = (1.0, 3.0)  # seconds of trouble, each time
UP = (1.5, 4.0)  # seconds of normal service between two outages


@pytest.fixture(scope="module")
def fleet(world):
    """One squid, N ports (anonymous: Via on, X-Forwarded-For deleted)."""
    ports = tuple(software.SquidPort(f"p{i}", LISTEN.format(i), free_port(LISTEN.format(i)), EGRESS)
                  for i in range(1, N_PROXIES + 1))
    inst = software.SquidInstance("flap-fleet", ports)
    workdir = world.workdir / "flap-fleet"
    workdir.mkdir(exist_ok=True)
    workdir.chmod(0o777)  # squid drops privileges to `proxy` and writes its logs here
    squid = software.squid(inst, workdir, workdir / "htpasswd-unused")
    squid.spawn()
    try:
        wait_all([squid], 20)
        yield [f"http://{p.host}:{p.port}" for p in ports]
    finally:
        squid.signal(15)
        squid.reap(time.monotonic() + 5)


@pytest.fixture
def target():
    t = AlikeTarget(TARGET_HOST).start()
    yield t
    t.stop()


@pytest.fixture
def judge(restartable_judge: RestartableJudge) -> RestartableJudge:
    return restartable_judge


def write_config(tmp_path: Path, world, judge, target: AlikeTarget, case: str, proxies: list[str]) -> Path:
    csv = tmp_path / "proxies.csv"
    csv.write_text("url,label\n" + "".join(f"{url},flap-{i}\n" for i, url in enumerate(proxies)))
    http, https = judge.judge.http_url, judge.judge.https_url
    q = json.dumps
    long_get = f"{target.url}/long" if case == "target_503" else f"{http}/long"
    ban = f"{target.url}/recaptcha/api2/anchor" if case in ("ban_429", "target_503") else f"{https}/recaptcha/api2/anchor"
    config = tmp_path / "proxycheck.toml"
    config.write_text("\n".join([
        f"state_dir = {q(str(tmp_path / 'state'))}",
        "[targets]",
        f"judge_url = {q(http + '/get')}",
        f"ip_url = {q(http + '/ip')}",
        f"ssl_url = {q(https + '/health')}",
        f"image_urls = [{q(http + '/image.png')}, {q(https + '/image.png')}]",
        f"long_get_url = {q(long_get)}",
        f"ban_url = {q(ban)}",
        f"ca_file = {q(str(world.ca_file))}",
        f"[timeouts]\nconnect = 2.0\nread = 4.0\nprobe = {PROBE_DEADLINE}",
        "[probes.ban]\nevery = 0",  # every check meets the ban target, not one in 30 min
        "[probes.images]\nevery = 0",
        "[check]\nconcurrency = 50",
        f"[health]\nfall = 1\nrise = 2\ninterval = {INTERVAL}\nfast_interval = {INTERVAL}\nfailing_interval = {INTERVAL}"
        f"\nmax_interval = {INTERVAL}\njitter = 0.1",
        f"[daemon]\nsources = [{q(str(csv))}]\ndispatch_interval = 0.2\ndrain_grace = 3.0\nheartbeat_interval = 5.0",
        "",
    ]))
    return config


def status(config: Path) -> dict:
    proc, data = run_json("status", "--config", str(config), "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return data


class Flapper(threading.Thread):
    """Trouble of ours, on and off, for ``FLAP_SECONDS`` (seeded: the same schedule every run)."""

    def __init__(self, case: str, judge: RestartableJudge, target: AlikeTarget) -> None:
        super().__init__(daemon=True)
        self.case, self.judge, self.target = case, judge, target
        self.outages = 0
        self.error: BaseException | None = None

    def trouble(self, on: bool) -> None:
        if self.case == "judge_killed":
            self.judge.kill() if on else self.judge.start()
        else:
            self.target.answer = (429 if self.case == "ban_429" else 503) if on else None

    def run(self) -> None:
        rng = random.Random(16)
        end = time.monotonic() + FLAP_SECONDS
        try:
            while time.monotonic() < end:
                time.sleep(rng.uniform(*UP))
                self.trouble(True)
                self.outages += 1
                time.sleep(rng.uniform(*OUTAGE))
                self.trouble(False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            self.error = exc


@pytest.mark.parametrize("case", ["judge_killed", "ban_429", "target_503"])
def test_short_outages_of_ours_blame_no_healthy_proxy(world, fleet, judge, target, tmp_path, case):
    config = write_config(tmp_path, world, judge, target, case, fleet)
    db = tmp_path / "state" / "proxycheck.db"
    # The demonstration that this test can fail passes its switch through to the daemon.
    unsafe = {k: v for k, v in os.environ.items() if k == "PROXYCHECK_UNSAFE_CONFIRM"}
    with running_daemon(config, notify=False, stop_timeout=20, **unsafe) as daemon:
        deadline = time.monotonic() + 60
        while sum(r["state"] == "healthy" for r in status(config)["proxies"]) < N_PROXIES:
            assert time.monotonic() < deadline, f"the fleet never became healthy:\n{daemon.output()[-3000:]}"
            assert daemon.proc.poll() is None, daemon.output()[-3000:]
            time.sleep(0.5)
        before = query(db, "SELECT count(*) FROM checks")[0][0]
        flapper = Flapper(case, judge, target)
        flapper.start()
        seen_unhealthy: dict[str, str] = {}
        banned: set[str] = set()
        polls = 0
        while flapper.is_alive():  # status --json throughout, not only at the end
            for row in status(config)["proxies"]:
                if row["state"] != "healthy":
                    seen_unhealthy.setdefault(row["label"], f"{row['state']} {row.get('code')} {row.get('detail')}")
                if row.get("banned_on"):
                    banned.add(row["label"])
            polls += 1
            time.sleep(0.5)
        assert flapper.error is None, flapper.error
        steady = time.monotonic()
        during = query(db, "SELECT count(*) FROM checks")[0][0] - before
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        failures = query(db, "SELECT p.label, c.code, c.detail FROM checks c JOIN proxies p ON p.id = c.proxy_id "
                             "WHERE NOT c.healthy")
        assert failures == [], f"{len(failures)} failures stored for healthy proxies, e.g. {failures[:3]}"
        assert seen_unhealthy == {}, f"{len(seen_unhealthy)} shown unhealthy: {list(seen_unhealthy.items())[:3]}"
        assert banned == set(), f"banned on a target that bans everyone: {sorted(banned)[:5]}"
        # status --json takes seconds on a loaded box; a few polls spread over the minute suffice.
        assert polls >= 5 and flapper.outages >= 10, (polls, flapper.outages)
        assert during >= N_PROXIES * 3, f"only {during} checks stored during {FLAP_SECONDS:g} s of flapping"
        # Within one interval of the trouble ending (plus one check's deadline: a check is stamped
        # when it starts), every proxy has been checked healthy again, with no help.
        while True:
            fresh = query(db, "SELECT count(DISTINCT proxy_id) FROM checks WHERE healthy "
                              f"AND checked_at >= '{stamp}'")[0][0]
            rows = status(config)["proxies"]
            if fresh == N_PROXIES and all(r["state"] == "healthy" for r in rows):
                break
            assert time.monotonic() - steady < INTERVAL * 1.1 + PROBE_DEADLINE + 2, (
                f"{fresh} of {N_PROXIES} checked healthy within one interval after the trouble ended")
            time.sleep(0.3)
    assert daemon.code == 0, daemon.err[-3000:]
