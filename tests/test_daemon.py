"""The daemon end to end: the installed CLI as a subprocess against the loopback world.

`db upgrade`, a CSV source, `run --once` and `run` with a NOTIFY_SOCKET the test listens on;
states in the database must match each fixture's expected code; SIGTERM loses no completed
result; a second daemon on one SQLite file refuses to start.
"""

from __future__ import annotations

import json
import re

from cli import run_cli, run_json
from daemons import FLEET, assert_states_match, by_label, label_of, running_daemon, status_json, wait_until, write_daemon_config
from world import EXPECTATIONS

HEALTHY = {e.name for e in EXPECTATIONS if e.expected_code is None}


def test_fleet_covers_every_code():
    assert {e.expected_code for e in EXPECTATIONS if e.name in FLEET and e.expected_code} == {25, 26, 27, 28, 29, 35, 36, 49}


def test_run_once_stores_every_fixture_verdict(world, tmp_path):
    config = write_daemon_config(world, tmp_path, FLEET)
    up = run_cli("db", "upgrade", "--config", str(config))
    assert up.returncode == 0, up.stderr
    proc = run_cli("run", "--once", "--config", str(config), timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = status_json(config)
    assert data["summary"]["counts"]["healthy"] == len(HEALTHY)
    assert data["summary"]["counts"]["unknown"] == 0
    assert len(data["proxies"]) == len(FLEET)
    assert_states_match(world, by_label(data), FLEET)
    secrets = {f.url.split(":")[2].split("@")[0] for f in world.fixtures if "@" in f.url}
    shown = run_cli("status", "--config", str(config))
    for secret in secrets:
        assert secret not in json.dumps(data) and secret not in shown.stdout and secret not in proc.stderr
    assert shown.returncode == 0
    assert "unhealthy" in shown.stdout and "proxycheck explain" in shown.stdout
    filtered = run_json("status", "--config", str(config), "--json", "--code", "29")[1]
    assert set(by_label(filtered)) == {"squid-forwarded-for", "tinyproxy-xtinyproxy"}


def test_daemon_refuses_an_old_schema(world, tmp_path):
    config = write_daemon_config(world, tmp_path, ["squid-anonymous"])
    proc = run_cli("run", "--once", "--config", str(config))
    assert proc.returncode == 2
    assert "proxycheck db upgrade" in proc.stderr and "Traceback" not in proc.stderr


def test_daemon_notifies_checks_and_stops_cleanly(world, tmp_path):
    names = ["squid-anonymous", "squid-elite", "squid-forwarded-for", "refused", "microsocks-auth-wrong-password", "squid-no-images"]
    config = write_daemon_config(world, tmp_path, names)
    with running_daemon(config, checked=30) as daemon:
        second = run_cli("run", "--once", "--config", str(config))
        assert second.returncode == 2 and "another proxycheck daemon" in second.stderr, second.stderr
        data = status_json(config)
        assert data["summary"]["checker"]["state"] == "ok"
        assert_states_match(world, by_label(data), names)
        daemon.stop()
        daemon.notify.wait_for("STOPPING=1", 5)
    assert daemon.code == 0, daemon.err
    statuses = [line for m in daemon.notify.messages for line in m.split("\n") if line.startswith("STATUS=")]
    assert any(re.match(r"STATUS=\d+ (unknown|healthy|unhealthy).*; checker ok; \d+ checks", line) for line in statuses), statuses
    assert "right-pass" not in daemon.err and "wrong-pass" not in daemon.err
    assert status_json(config)["summary"]["checker"]["state"] == "not running"


def test_sigterm_mid_round_keeps_every_completed_result(world, tmp_path):
    """Slow proxies are in flight when SIGTERM arrives; fast ones have finished: all are kept."""
    names = ["silent-http", "silent-socks5", "squid-anonymous", "squid-elite", "microsocks", "refused"]
    config = write_daemon_config(world, tmp_path, names)
    with running_daemon(config) as daemon:
        fast = {"squid-anonymous", "squid-elite", "microsocks", "refused"}
        wait_until(lambda: all(by_label(status_json(config))[n]["last_checked_at"] for n in fast), 20, "fast proxies checked")
    # The with block's SIGTERM came while the silent ones were still inside their probe deadline.
    assert daemon.code == 0, daemon.err
    rows = by_label(status_json(config))
    assert all(rows[n]["last_checked_at"] for n in names), {n: rows[n]["last_checked_at"] for n in names}
    assert_states_match(world, rows, names)


def test_sighup_resyncs_sources(world, tmp_path):
    config = write_daemon_config(world, tmp_path, ["squid-anonymous", "microsocks"])
    with running_daemon(config) as daemon:
        csv = tmp_path / "proxies.csv"
        elite = world.by_name("squid-elite")
        csv.write_text(f"url,label\n{world.by_name('squid-anonymous').url},{label_of('squid-anonymous')}\n"
                       f"{elite.url},{label_of('squid-elite')}\nnot-a-proxy://x,broken\n")
        daemon.reload()
        rows = by_label(status_json(config))
        assert rows["microsocks"]["state"] == "disabled"
        assert "squid-elite" in rows
        wait_until(lambda: by_label(status_json(config))["squid-elite"]["state"] == "healthy", 20, "the new proxy checked")
    assert daemon.code == 0, daemon.err
    assert "proxies.csv:4: type: 'not-a-proxy' is not a proxy type" in daemon.err  # a bad row is logged, not fatal
