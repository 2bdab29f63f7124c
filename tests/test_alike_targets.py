"""Targets that answer every caller alike cannot judge; a spare judge keeps checking going.

Real proxies of the loopback world, the world's judge, and ``faults.AlikeTarget`` as a ban target
that answers 429 (the recaptcha preset's ban) or 503 to everyone, the checker's own request included:

- ``check --json``: that target's verdict is unknown (``"banned": null``, the detail says why),
  the proxy is not banned and not healthy-for it (``usable_for``), while the other targets still
  judge (a proxy the judge bans is still code 28 on them);
- the daemon: ``status``, ``status --json``, ``/healthz`` and ``doctor`` name the target as unable
  to judge, the checker stays OK;
- ``[targets].judge_urls`` with the first judge dead: every verdict as with one good judge, and
  doctor names the dead one.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from cli import run_cli, run_json
from daemons import running_daemon, status_json, wait_until
from world.faults import AlikeTarget, RefusedPort

from proxycheck.world import free_port

pytestmark = pytest.mark.world

ALIKE_HOST = "127.0.17.3"


@pytest.fixture(params=[429])
def everyone429(request):
    t = AlikeTarget(ALIKE_HOST).start()
    t.answer = request.param
    yield t
    t.stop()


@pytest.fixture
def dead_judge():
    port = RefusedPort("127.0.17.4")
    port.start()
    yield f"http://{port.host}:{port.port}/get"
    port.stop()


def config_with(world, tmp_path: Path, *, alike: AlikeTarget | None = None, first_judge: str | None = None,
                extra: str = "") -> Path:
    text = Path(world.config_path).read_text()
    if first_judge is not None:
        text = re.sub(r'^judge_url = (".*")$', lambda m: f'judge_urls = ["{first_judge}", {m.group(1)}]', text, flags=re.M)
        assert "judge_urls" in text
    if alike is not None:
        text += f'\n[[targets.ban]]\nname = "everyone429"\nurl = "{alike.url}/recaptcha/api2/anchor"\npreset = "recaptcha"\n'
    path = tmp_path / "proxycheck.toml"
    path.write_text(text + extra)
    return path


@pytest.mark.parametrize("everyone429", [429, 503], indirect=True)  # a ban, and an error, for everyone
def test_a_ban_target_that_bans_everyone_gives_unknown_not_banned(world, tmp_path, everyone429):
    config = config_with(world, tmp_path, alike=everyone429)
    names = ["squid-anonymous", "squid-banned-exit"]
    proc, data = run_json("check", "--config", str(config), "--json", *(world.by_name(n).url for n in names))
    healthy, banned = data
    verdict = healthy["targets"]["everyone429"]
    assert healthy["healthy"] is True and verdict["banned"] is None, healthy
    assert "cannot judge" in verdict["detail"] and f"{everyone429.answer} to our own direct request too" in verdict["detail"]
    assert "everyone429" not in healthy["usable_for"] and "recaptcha" in healthy["usable_for"], healthy["usable_for"]
    # The target that can judge still bans the exit the judge bans; the one that cannot says nothing.
    assert (banned["code"], banned["targets"]["recaptcha"]["banned"]) == (28, True), banned
    assert banned["targets"]["everyone429"]["banned"] is None and "everyone429" not in banned["usable_for"]
    assert "unknown on everyone429" in banned["detail"], banned["detail"]


def test_status_healthz_and_doctor_name_the_target_that_cannot_judge(world, tmp_path, everyone429):
    csv = tmp_path / "proxies.csv"
    csv.write_text("url\n" + world.by_name("squid-anonymous").url + "\n")
    port = free_port("127.0.0.1")
    config = config_with(world, tmp_path, alike=everyone429,
                         extra=f'\n[daemon]\nsources = ["{csv}"]\ndispatch_interval = 0.2\ndrain_grace = 2.0\n'
                               f'\n[http]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n' + config.read_text())  # a top-level key: first
    with running_daemon(config, notify=False) as daemon:
        summary = wait_until(lambda: (s := status_json(config)["summary"])["checker"]["state"] == "ok"
                             and s["checker"]["reason"] and s, 30, "status --json to name the target")
        assert "everyone429" in summary["checker"]["reason"] and "cannot judge" in summary["checker"]["reason"]
        rows = wait_until(lambda: [r for r in status_json(config)["proxies"] if r["state"] == "healthy"], 30,
                          "the proxy checked healthy")
        assert rows[0]["banned_on"] == [] and "everyone429" not in rows[0]["usable_for"], rows
        text_status = run_cli("status", "--config", str(config))
        assert "ok, but" in text_status.stdout and "everyone429 cannot judge" in text_status.stdout, text_status.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            health = json.load(response)
        assert health["checker"] == "ok" and "everyone429 cannot judge" in health["checker_reason"], health
        doctor = run_cli("doctor", "--config", str(config))
        lines = doctor.stdout.splitlines()
        assert any(line.startswith("FAIL ban[") and "everyone429 cannot judge" in line for line in lines), doctor.stdout
        assert any(line.startswith("OK   daemon") and "everyone429 cannot judge" in line for line in lines), doctor.stdout
    code, err = daemon.code, daemon.err
    assert code == 0, err


def test_a_dead_first_judge_leaves_the_second_to_judge(world, tmp_path, dead_judge):
    config = config_with(world, tmp_path, first_judge=dead_judge)
    names = ["squid-anonymous", "squid-elite", "squid-forwarded-for", "refused"]
    proc, data = run_json("check", "--config", str(config), "--json", *(world.by_name(n).url for n in names))
    assert [(r["code"], r["anonymity"]) for r in data] == [(None, "anonymous"), (None, "elite"), (29, "transparent"),
                                                           (25, None)], data
    doctor = run_cli("doctor", "--config", str(config))
    assert any(line.startswith("FAIL judge_urls[0]:") for line in doctor.stdout.splitlines()), doctor.stdout
    assert any(line.startswith("OK   judge_urls[1]:") for line in doctor.stdout.splitlines()), doctor.stdout
