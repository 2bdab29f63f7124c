"""The runner's promises: a bug stops the daemon loudly, a storage error does not; signal handlers
are given back; SIGHUP applies what it can, names what needs a restart, and always ends READY=1.

The daemon runs as the real ``proxycheck run`` (or in-process where the test is about the
process's own signal handlers). To make a job hit a bug, the subprocess replaces one storage
function before starting the CLI: the runner under test is untouched.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli import run_cli
from daemons import running_daemon, status_json, wait_until, write_daemon_config

from proxycheck.config import load_settings
from proxycheck.daemon import Daemon

BROKEN_RETENTION = {
    "bug": "raise ZeroDivisionError('a bug in retention')",
    "storage": "raise OperationalError('DELETE FROM checks', {}, Exception('database or disk is full'))",
    "hung": "import time; time.sleep(60)",  # a database call that does not return
}


def broken_retention(config: Path, kind: str) -> list[str]:
    """``proxycheck run`` in a process whose ``store.apply_retention`` raises (``BROKEN_RETENTION``)."""
    program = textwrap.dedent(f"""
        import sys
        from sqlalchemy.exc import OperationalError
        import proxycheck.store
        def apply_retention(*args, **kwargs):
            {BROKEN_RETENTION[kind]}
        proxycheck.store.apply_retention = apply_retention
        from proxycheck.cli import cli
        sys.argv = ["proxycheck", "run", "--config", {str(config)!r}]
        cli()
    """)
    return [sys.executable, "-c", program]


@pytest.mark.parametrize("kind", ["bug", "storage"])
def test_a_bug_stops_the_daemon_with_exit_1_and_a_storage_error_does_not(world, tmp_path, kind):
    """Retention is a periodic job on APScheduler, which would log an exception and go on."""
    config = write_daemon_config(world, tmp_path, ["squid-anonymous"], extra="retention_interval = 1.0\n")
    with running_daemon(config, notify=False, argv=broken_retention(config, kind)) as daemon:
        if kind == "bug":
            code, err = daemon.exited(30, "the daemon to stop after a bug")
        else:
            wait_until(lambda: any(r["last_checked_at"] for r in status_json(config)["proxies"]), 20, "a check")
            time.sleep(3)  # retention (every 1 s) has failed a few times: logged once, the daemon goes on
            assert daemon.proc.poll() is None
            code, err = daemon.stop()
    if kind == "bug":
        assert code == 1, err
        assert "retention failed with a bug; stopping the daemon (exit code 1)" in err, err
        assert "Traceback" in err and "ZeroDivisionError: a bug in retention" in err, err
        assert "stopped after" in err  # an orderly stop: results written, instance marked stopped
    else:
        assert code == 0, err
        assert "database call apply_retention failed" in err and "database or disk is full" in err, err
        assert err.count("database call apply_retention failed") == 1, err  # not once per turn
        assert "Traceback" not in err, err


def test_sighup_reschedules_a_job_whose_interval_changed(world, tmp_path):
    """Retention has a bug but runs hourly: the daemon runs. A SIGHUP setting its interval to 1 s
    reschedules it from now, and its next run (within seconds, not an hour) stops the daemon."""
    config = write_daemon_config(world, tmp_path, ["squid-anonymous"], extra="retention_interval = 3600.0\n")
    with running_daemon(config, argv=broken_retention(config, "bug")) as daemon:
        wait_until(lambda: any(r["last_checked_at"] for r in status_json(config)["proxies"]), 20, "a check")
        assert daemon.proc.poll() is None
        config.write_text(config.read_text().replace("retention_interval = 3600.0", "retention_interval = 1.0"))
        daemon.proc.send_signal(signal.SIGHUP)
        code, err = daemon.exited(15, "retention to be rescheduled (and to stop the daemon)")
    assert code == 1, err
    assert "retention now runs every 1 s (was 3600 s)" in err, err
    assert "retention failed with a bug; stopping the daemon (exit code 1)" in err, err
    assert err.count("Traceback") == 1, err  # once, from the daemon; APScheduler's own copy is dropped


def test_a_job_running_at_sigterm_ends_quietly(world, tmp_path):
    """SIGTERM while retention waits on a hung database call: the scheduler stops, the job is
    cancelled without a traceback (APScheduler would report the CancelledError as a failure), exit 0."""
    config = write_daemon_config(world, tmp_path, ["squid-anonymous"], extra="retention_interval = 1.0\n")
    with running_daemon(config, notify=False, argv=broken_retention(config, "hung")) as daemon:
        wait_until(lambda: any(r["last_checked_at"] for r in status_json(config)["proxies"]), 20, "a check")
        time.sleep(2)  # retention (every 1 s) is running, stuck in its database call
    code, err = daemon.code, daemon.err
    assert code == 0, err
    assert "exiting without waiting for 1 database calls still running" in err, err  # it was in flight
    assert "Traceback" not in err and "CancelledError" not in err, err


def test_signal_handlers_are_given_back(world, tmp_path):
    config = write_daemon_config(world, tmp_path, ["squid-anonymous"])
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    sentinel = {sig: (lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    previous = {sig: signal.signal(sig, handler) for sig, handler in sentinel.items()}
    try:
        daemon = Daemon(load_settings(str(config)), config_path=str(config), once=True)
        assert asyncio.run(daemon.run()) == 0
        assert daemon.checks_done == 1
        assert {sig: signal.getsignal(sig) for sig in sentinel} == sentinel
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_sighup_applies_settings_and_names_those_that_need_a_restart(world, tmp_path):
    config = write_daemon_config(world, tmp_path, ["squid-anonymous"])
    original = config.read_text()
    reader = tmp_path / "status.toml"  # `status` keeps reading the running daemon's database
    reader.write_text(original)
    try:
        with running_daemon(config) as daemon:
            wait_until(lambda: status_json(reader)["summary"]["checker"]["state"] == "ok", 10, "checker ok")
            # A judge nobody listens on (applied: the checker turns degraded) and a new state_dir
            # (needs a restart: kept).
            judge = world.judge.http_url + "/get"
            dead = "http://127.0.0.2:9/get"
            config.write_text(original.replace(judge, dead).replace('state_dir = "', 'state_dir = "/elsewhere/', 1))
            daemon.reload()
            wait_until(lambda: status_json(reader)["summary"]["checker"]["state"] == "degraded", 10, "the new judge URL to be used")
            config.write_text("this is [not toml")
            daemon.reload()  # a broken file keeps the old settings, and still READY=1
            config.write_text(original)
            daemon.reload()
            wait_until(lambda: status_json(reader)["summary"]["checker"]["state"] == "ok", 10, "the old judge again")
    finally:
        config.write_text(original)
    code, err = daemon.code, daemon.err
    assert code == 0, err
    assert "changed settings that need a restart" in err and "state_dir" in err, err
    assert "reloaded: applied [targets]" in err, err
    assert "configuration not reloaded, keeping the old one" in err, err


def test_ready_line_counts_and_documentation_ranges(world, tmp_path):
    """The first run explains itself: real counts at once, example proxies named as such, when
    new proxies get their first check, and ``status`` shows the round as soon as checks are stored."""
    config = write_daemon_config(world, tmp_path, ["squid-anonymous", "microsocks"])
    csv = tmp_path / "proxies.csv"
    csv.write_text(csv.read_text() + "http://192.0.2.10:3128,example-1\nsocks5://[2001:db8::1]:1080,example-2\n")
    with running_daemon(config) as daemon:
        data = wait_until(lambda: (d := status_json(config)) and all(
            r["last_checked_at"] for r in d["proxies"] if r["label"].startswith("fixture")) and d, 20, "checks stored")
        assert data["summary"]["last_round_at"] is not None  # stored with the checks, not 10 s later
        # An import while the daemon runs: checked within seconds, and the log says so.
        elite = world.by_name("squid-elite").url
        imported = run_cli("import", "--config", str(config), elite)
        assert imported.returncode == 0, imported.stderr
        wait_until(lambda: any(r["state"] == "healthy" and r["proxy"].startswith("http://127.0.1.2:")
                               for r in status_json(config)["proxies"]), 5, "the imported proxy checked")
    code, err = daemon.code, daemon.err
    assert code == 0, err
    assert "ready: 4 unknown; checker ok" in err, err
    assert ("2 of the 4 proxies in " in err and "are in documentation address ranges" in err
            and "can never be healthy; put your own proxies in" in err), err
    assert "4 proxies were never checked: first checks are due" in err, err
    assert "first check of" in err and "new proxies under way" in err, err


def test_sqlite_sigterm_while_the_database_is_locked_exits_within_the_grace(world, tmp_path):
    """Another process holds SQLite's write lock (busy_timeout 10 s per call): SIGTERM still exits
    within drain_grace + 5 s, and says how many results it could not write."""
    import sqlite3

    grace = 2.0
    config = write_daemon_config(world, tmp_path, ["squid-anonymous", "microsocks", "refused"])
    config.write_text(config.read_text().replace("drain_grace = 10.0", f"drain_grace = {grace}"))
    db = Path(tmp_path / "state" / "proxycheck.db")
    locker = None
    try:
        with running_daemon(config, notify=False) as daemon:
            wait_until(lambda: [r["last_checked_at"] for r in status_json(config)["proxies"]].count(None) == 0
                       and len(status_json(config)["proxies"]) == 3, 20, "first checks")
            locker = sqlite3.connect(db, timeout=30, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")
            time.sleep(4)  # checks complete and wait in the writer; claims block on the lock
            sent = time.monotonic()
            code, err = daemon.stop(timeout=grace + 20)
            took = time.monotonic() - sent
    finally:
        if locker is not None:
            locker.rollback()
            locker.close()
    assert code == 0, err
    assert took < grace + 5, (took, err)
    assert "Traceback" not in err and "CancelledError" not in err, err


def test_a_degraded_checker_is_repeated_in_the_log_with_the_fix(world, tmp_path, monkeypatch, caplog):
    """Offline, the daemon keeps saying what is wrong and what to run (every 60 s; 0.5 s here)."""
    import logging

    from proxycheck.daemon import monitor

    config = write_daemon_config(world, tmp_path, ["squid-anonymous"], extra="heartbeat_interval = 0.2\n")
    config.write_text(config.read_text().replace(world.judge.http_url + "/get", "http://127.0.0.2:9/get"))
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    monkeypatch.setattr(monitor, "DEGRADED_LOG_EVERY", 0.5)

    async def run_for(seconds: float) -> int:
        daemon = Daemon(load_settings(str(config)), config_path=str(config))
        task = asyncio.create_task(daemon.run())
        await asyncio.sleep(seconds)
        daemon.stopping.set()
        return await task

    with caplog.at_level(logging.INFO, logger="proxycheck.daemon"):
        assert asyncio.run(run_for(3.0)) == 0
    reminders = [r.getMessage() for r in caplog.records if "checker degraded for" in r.getMessage()]
    assert len(reminders) >= 2, caplog.text
    assert all("proxycheck doctor" in m and "proxycheck judge" in m and "[targets]" in m for m in reminders)
    assert "http://127.0.0.2:9/get" in reminders[-1]
