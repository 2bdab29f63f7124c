"""One bad CSV row costs one row, in the daemon (issue 9): a source holding a NUL byte, a `²`
port, a 200 KB field, a 300-character host and lone-CR line endings, next to good rows that
point at real loopback proxies. On SQLite and PostgreSQL: `run --once` exits 0, stores and
checks every good row, and reports each bad row once with file:line; `run` starts, and after
SIGHUP with such a file it still sends READY=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pgdb import throwaway_database

from cli import run_cli
from daemons import assert_states_match, by_label, label_of, running_daemon, status_json, write_daemon_config

GOOD = ["squid-anonymous", "squid-elite", "microsocks"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """'' (the config's SQLite file in state_dir), or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield ""
        return
    with throwaway_database("proxycheck_badsrc") as url:
        yield url


def write_bad_source(world, csv: Path, good: list[str]) -> dict[int, str]:
    """Good rows between bad ones, lone-CR line ends; returns {line number: what is wrong}."""
    squid = world.by_name("squid-anonymous").url
    host, port = squid.rsplit("@", 1)[-1].removeprefix("http://").rsplit(":", 1)
    bad = {
        3: f"http://u:pa\x00ss@{host}:{port},nul-byte",
        5: f"http://{host}:\u00b2,superscript-port",
        6: f"http://{host}:{port}," + "x" * 200_000,
        8: f"http://{'h' * 300}:{port},long-host",
        9: f"http://u:pa%00ss@{host}:{port},percent-nul",
    }
    lines = {2: good[0], 4: good[1], 7: good[2]}
    rows = ["url,label"]
    for n in range(2, 10):
        if n in bad:
            rows.append(bad[n])
        else:
            name = lines[n]
            rows.append(f"{world.by_name(name).url},{label_of(name)}")
    csv.write_bytes(("\r".join(rows) + "\r").encode())
    return {3: "password", 5: "port", 6: "row", 8: "address", 9: "password"}


def assert_each_bad_row_reported_once(err: str, csv: Path, bad: dict[int, str], times: int = 1) -> None:
    for line, field in bad.items():
        assert err.count(f"{csv}:{line}: ") == times, (line, err[-3000:])
        assert f"{csv}:{line}: {field}: " in err
    assert "Traceback" not in err and "x" * 100 not in err


def test_run_once_keeps_every_good_row(world, tmp_path, database_url):
    config = write_daemon_config(world, tmp_path, GOOD, database_url=database_url)
    csv = tmp_path / "proxies.csv"
    bad = write_bad_source(world, csv, GOOD)
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    proc = run_cli("run", "--once", "--config", str(config), timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert_each_bad_row_reported_once(proc.stderr, csv, bad)
    rows = by_label(status_json(config))
    assert sorted(rows) == sorted(GOOD)
    assert all(rows[n]["last_checked_at"] for n in GOOD), rows
    assert_states_match(world, rows, GOOD)


def test_run_and_sighup_with_bad_rows_send_ready(world, tmp_path, database_url):
    config = write_daemon_config(world, tmp_path, GOOD, database_url=database_url)
    csv = tmp_path / "proxies.csv"
    bad = write_bad_source(world, csv, GOOD)
    with running_daemon(config, ready=30) as daemon:  # a `²` port used to make `run` exit 2 before READY
        daemon.reload(timeout=20)
        assert daemon.proc.poll() is None
    assert daemon.code == 0, daemon.err
    assert_each_bad_row_reported_once(daemon.err, csv, bad, times=2)  # at start and at SIGHUP
    assert "Task exception was never retrieved" not in daemon.err
    assert sorted(by_label(status_json(config))) == sorted(GOOD)
