"""Several daemons on one real PostgreSQL: leases, takeover after SIGKILL, a killed connection,
a database that goes away for longer than the old write retries lasted, and SIGTERM with it gone.

Each test gets a throwaway database on the machine's PostgreSQL (PROXYCHECK_TEST_PG_URL).
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from daemons import label_of, running_daemon, wait_until, write_daemon_config
from pgdb import admin_engine, throwaway_database
from sqlalchemy import Connection, create_engine, make_url, text

pytestmark = pytest.mark.postgres
GOOD = ["squid-anonymous", "squid-elite", "microsocks", "pproxy-socks4", "squid-forwarded-for", "refused"]


@pytest.fixture
def pg_db() -> Iterator[str]:
    with throwaway_database("proxycheck_daemon") as url:
        yield url


def checks_by_proxy(db: str | Connection) -> dict[str, list[tuple[datetime, str]]]:
    """Each proxy's checks (time, instance), read at ``db``: a URL, or an open connection's snapshot."""
    query = text("SELECT p.label, c.checked_at, c.instance_id FROM checks c JOIN proxies p ON p.id = c.proxy_id "
                 "ORDER BY c.checked_at")
    if isinstance(db, Connection):
        rows = db.execute(query).all()
    else:
        engine = create_engine(db)
        try:
            with engine.connect() as conn:
                rows = conn.execute(query).all()
        finally:
            engine.dispose()
    out: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for label, at, instance in rows:
        out[label].append((at, instance))
    return out


def instances(checks: dict[str, list[tuple[datetime, str]]]) -> set[str]:
    return {inst for rows in checks.values() for _, inst in rows}


def test_two_daemons_share_the_fleet_and_survive_a_sigkill(world, tmp_path, pg_db):
    extra = "heartbeat_interval = 0.5\n"  # lease_seconds stays 180 s: takeover must not wait for it
    config = write_daemon_config(world, tmp_path, GOOD + ["silent-http", "silent-socks5"], database_url=pg_db, extra=extra)
    with (running_daemon(config, notify=tmp_path / "a.sock") as a,
          running_daemon(config, upgrade=False, notify=tmp_path / "b.sock") as b):
        # Both share the work: whichever dispatch comes first claims a due proxy, so within a few
        # intervals each daemon has checked something (waited for, not slept: a loaded CI box is slow).
        wait_until(lambda: len(instances(checks_by_proxy(pg_db))) == 2, 40, "both daemons to check something")
        time.sleep(6)  # two more intervals, for the spacing check below
        before = checks_by_proxy(pg_db)
        # Once per interval by exactly one daemon: consecutive checks of a proxy are never
        # closer than the (jittered) interval, whichever daemon made them.
        for label, checks in before.items():
            times = [t for t, _ in checks]
            gaps = [(b_ - a_).total_seconds() for a_, b_ in zip(times, times[1:])]
            assert all(g >= 1.5 for g in gaps), (label, gaps)
        # Kill A while it holds leases (a slow proxy in flight), so B must take them back.
        def leases_of_a() -> int:
            engine = create_engine(pg_db)
            try:
                with engine.connect() as conn:
                    return conn.execute(text("SELECT count(*) FROM proxies p JOIN instances i ON p.lease_owner = i.id "
                                             "WHERE i.pid = :pid"), {"pid": a.proc.pid}).scalar()
            finally:
                engine.dispose()
        # Counted with A frozen (SIGSTOP): a lease seen on a running daemon may be released by a
        # quick check before the kill lands, and then B has nothing to take back.
        def frozen_holding_leases() -> bool:
            a.proc.send_signal(signal.SIGSTOP)
            if leases_of_a():
                return True
            a.proc.send_signal(signal.SIGCONT)
            return False
        wait_until(frozen_holding_leases, 30, "daemon A to hold leases")
        a.stop(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        # B takes over everything, including A's leases: A's heartbeat stopped, so B takes them back
        # after three heartbeat intervals instead of waiting for the 180 s lease.
        def all_taken_over():
            after = checks_by_proxy(pg_db)
            return all(any(t > killed_at for t, _ in after[label]) for label in before)
        wait_until(all_taken_over, 20, "daemon B to check every proxy after A was killed")
        survivor = {inst for checks in checks_by_proxy(pg_db).values() for t, inst in checks if t > killed_at}
        assert len(survivor) == 1
    code, err = b.code, b.err
    assert code == 0, err
    assert "took back" in err and "silent for more than" in err, err


def test_daemon_survives_a_terminated_database_connection(world, tmp_path, pg_db):
    config = write_daemon_config(world, tmp_path, ["squid-anonymous", "microsocks", "refused"], database_url=pg_db)
    db_name = make_url(pg_db).database
    admin = admin_engine()
    try:
        with running_daemon(config) as daemon:
            wait_until(lambda: len(checks_by_proxy(pg_db)) == 3, 20, "first checks")
            with admin.connect() as conn:
                killed = conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND application_name LIKE 'proxycheck%'"), {"db": db_name}).scalar()
            assert killed >= 1
            terminated_at = datetime.now(UTC)
            wait_until(lambda: all(any(t > terminated_at for t, _ in c) for c in checks_by_proxy(pg_db).values()), 30,
                       "checks after the connection was terminated")
            assert daemon.proc.poll() is None
    finally:
        admin.dispose()
    assert daemon.code == 0, daemon.err


def set_connections(db_name: str, allowed: bool) -> None:
    """Let nobody (or everybody again) connect to ``db_name``; existing connections are cut."""
    admin = admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'))
            if not allowed:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"),
                             {"db": db_name})
    finally:
        admin.dispose()


def test_completed_checks_wait_for_the_database_to_come_back(world, tmp_path, pg_db):
    """A 40 s outage (the old writer gave up after ~34 s): checks finished meanwhile are written."""
    config = write_daemon_config(world, tmp_path, ["silent-http", "silent-socks5", "squid-anonymous"], database_url=pg_db)
    db_name = make_url(pg_db).database
    try:
        with running_daemon(config) as daemon:
            wait_until(lambda: len(checks_by_proxy(pg_db)) == 3, 30, "first checks")
            # Wait for the slow proxies to be in flight again, then take the database away. The leases
            # and the checks already written are read in one snapshot: read one after the other, a check
            # that ends in between is in ``before`` although its lease was seen, and nothing from before
            # the outage is left to be held (the race that made this test flaky).
            def slow_in_flight() -> tuple[list[str], dict[str, list[tuple[datetime, str]]]] | None:
                engine = create_engine(pg_db, isolation_level="REPEATABLE READ")
                try:
                    with engine.connect() as conn:
                        leased = list(conn.scalars(text("SELECT label FROM proxies WHERE lease_owner IS NOT NULL "
                                                        "AND label IN (:a, :b)"),
                                                   {"a": label_of("silent-http"), "b": label_of("silent-socks5")}))
                        return (leased, checks_by_proxy(conn)) if leased else None
                finally:
                    engine.dispose()
            leased, before = wait_until(slow_in_flight, 30, "a slow proxy in flight")
            down_at = datetime.now(UTC)
            set_connections(db_name, False)
            time.sleep(40)
            set_connections(db_name, True)
            # Their checks (started before the outage, finished during it: read timeout 2 s) were held
            # and written now, not dropped. A check's time is when it started.
            def written_from_the_outage() -> bool:
                checks = checks_by_proxy(pg_db)
                return all(any(t < down_at and (t, i) not in before[label] for t, i in checks[label]) for label in leased)
            wait_until(written_from_the_outage, 30, "the checks finished during the outage to be written")
            assert daemon.proc.poll() is None
    finally:
        set_connections(db_name, True)
    code, err = daemon.code, daemon.err
    assert code == 0, err
    assert "database call write_results works again after" in err and "held results)" in err, err
    assert "gave up" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("in_flight", [False, True], ids=["idle", "checks-in-flight"])
def test_sigterm_with_the_database_gone_exits_within_the_grace(world, tmp_path, pg_db, in_flight):
    grace = 3.0
    names = ["silent-http", "silent-socks5", "squid-anonymous"]
    config = write_daemon_config(world, tmp_path, names, database_url=pg_db, extra=f"drain_grace = {grace}\n"
                                 ).read_text().replace("drain_grace = 10.0\n", "")
    path = tmp_path / "proxycheck.toml"
    path.write_text(config)
    db_name = make_url(pg_db).database
    try:
        with running_daemon(path) as daemon:
            wait_until(lambda: len(checks_by_proxy(pg_db)) == 3, 30, "first checks")
            set_connections(db_name, False)
            if not in_flight:
                time.sleep(3)  # the writer is retrying, claims fail: the daemon waits for its database
            sent = time.monotonic()
            daemon.proc.send_signal(signal.SIGTERM)
            code, err = daemon.stop(timeout=grace + 20)
            took = time.monotonic() - sent
    finally:
        set_connections(db_name, True)
    assert code == 0, err
    assert took < grace + 5, (took, err)
    assert "Traceback" not in err and "CancelledError" not in err, err
