"""Quick recovery on SQLite: a SIGKILLed daemon's in-flight proxies are checked again right
after the restart (the flock proves nobody else holds their leases), not after the 180 s lease.

The installed CLI as a subprocess, real proxies from the loopback world, a real SQLite file.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime

from daemons import label_of, running_daemon, status_json, wait_until, write_daemon_config
from daemons import sqlite_query as query

SLOW = ["silent-http", "silent-socks5"]  # in flight for seconds: their probes wait for a read timeout
FAST = ["squid-anonymous", "microsocks"]


def test_sigkill_then_restart_rechecks_the_in_flight_proxies_at_once(world, tmp_path):
    config = write_daemon_config(world, tmp_path, SLOW + FAST)  # lease_seconds stays at its default, 180 s
    db = tmp_path / "state" / "proxycheck.db"
    with running_daemon(config, notify=tmp_path / "a.sock") as first:
        slow_labels = tuple(label_of(n) for n in SLOW)
        wait_until(lambda: len(query(db, "SELECT id FROM proxies WHERE lease_owner IS NOT NULL AND label IN (?, ?)",
                                     *slow_labels)) == 2, 20, "the slow proxies in flight")
        in_flight = {r[0] for r in query(db, "SELECT id FROM proxies WHERE lease_owner IS NOT NULL")}
        first.stop(signal.SIGKILL)
    leases = query(db, "SELECT lease_expires_at FROM proxies WHERE lease_owner IS NOT NULL")
    assert len(leases) >= 2  # the dead daemon's leases are still there, far from expiring

    restarted_at = datetime.now(UTC)
    with running_daemon(config, upgrade=False, notify=tmp_path / "b.sock") as second:
        ready_at = datetime.now(UTC)

        def rechecked() -> bool:
            marks = ",".join("?" * len(in_flight))
            rows = query(db, f"SELECT proxy_id, min(checked_at) FROM checks WHERE checked_at >= ? AND proxy_id IN ({marks}) "
                         "GROUP BY proxy_id", restarted_at.strftime("%Y-%m-%d %H:%M:%S.%f"), *in_flight)
            return len(rows) == len(in_flight) and rows

        rows = wait_until(rechecked, 20, "the dead daemon's in-flight proxies checked again")
    assert second.code == 0, second.err
    assert "took back" in second.err and "did not stop cleanly" in second.err, second.err
    # A check's time is when it started: every one began within one dispatch interval (0.2 s) of
    # the restarted daemon being ready (slack for a loaded machine), not when the 180 s lease ends.
    for _, started in rows:
        started_at = datetime.fromisoformat(started).replace(tzinfo=UTC)
        assert (started_at - ready_at).total_seconds() < 2.0, (started_at, ready_at)


def test_sigkill_mid_round_then_restart_rechecks_the_in_flight_proxies_before_the_spread(world, tmp_path):
    """The in-flight proxies were checked before (so the start-up spread would take them) and the
    restarted daemon runs with [health].interval = 60: they are still re-checked at once, since
    their leases are taken back after the spread. The SIGKILLed daemon is not shown as running,
    neither while none runs (the flock is free) nor after the restart (its row is marked stopped)."""
    config = write_daemon_config(world, tmp_path, SLOW + FAST)
    db = tmp_path / "state" / "proxycheck.db"
    slow_labels = tuple(label_of(n) for n in SLOW)
    with running_daemon(config, notify=tmp_path / "a.sock") as first:
        wait_until(lambda: len(query(db, "SELECT id FROM proxies WHERE lease_owner IS NOT NULL AND last_checked_at IS NOT NULL "
                                         "AND label IN (?, ?)", *slow_labels)) == 2, 90, "the slow proxies in flight again")
        # The slow ones only: a fast one may finish between this query and the kill.
        in_flight = {r[0] for r in query(db, "SELECT id FROM proxies WHERE label IN (?, ?)", *slow_labels)}
        assert status_json(config)["summary"]["checker"]["daemons"][0]["pid"] == first.proc.pid
        first.stop(signal.SIGKILL)
    assert status_json(config)["summary"]["checker"]["daemons"] == []  # at once, not 60 s later
    text = config.read_text()
    config.write_text(text.replace("\ninterval = 3.0\n", "\ninterval = 60.0\n").replace("max_interval = 4.0", "max_interval = 120.0"))

    restarted_at = datetime.now(UTC)
    with running_daemon(config, upgrade=False, notify=tmp_path / "b.sock") as second:
        ready_at = datetime.now(UTC)

        def rechecked() -> bool:
            marks = ",".join("?" * len(in_flight))
            rows = query(db, f"SELECT proxy_id, min(checked_at) FROM checks WHERE checked_at >= ? AND proxy_id IN ({marks}) "
                         "GROUP BY proxy_id", restarted_at.strftime("%Y-%m-%d %H:%M:%S.%f"), *in_flight)
            return len(rows) == len(in_flight) and rows

        rows = wait_until(rechecked, 30, "the dead daemon's in-flight proxies checked again")
        assert [d["pid"] for d in status_json(config)["summary"]["checker"]["daemons"]] == [second.proc.pid]
    assert second.code == 0, second.err
    assert "took back" in second.err, second.err
    for _, started in rows:
        started_at = datetime.fromisoformat(started).replace(tzinfo=UTC)
        assert (started_at - ready_at).total_seconds() < 2.0, (started_at, ready_at)
