"""The errors a new user meets first: one sentence naming the next step, exit 2, no traceback.

Run as the installed CLI in an empty directory, against real SQLite files and a real (closed or
missing) PostgreSQL address on loopback.
"""

from __future__ import annotations

import sqlite3

import pytest

from cli import run_cli


def assert_one_clear_error(proc, *phrases: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("proxycheck: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_missing_config_file(tmp_path):
    assert_one_clear_error(run_cli("status", "--config", "nope.toml", cwd=tmp_path), "nope.toml does not exist", "proxycheck.example.toml")


def test_bad_config_key_is_named(tmp_path):
    (tmp_path / "pc.toml").write_text("[worker]\nmax_age = -3\n")
    assert_one_clear_error(run_cli("status", "--config", "pc.toml", cwd=tmp_path), "[worker].max_age")


@pytest.mark.parametrize("name", ["missing.csv", "a-directory.csv"])
def test_unreadable_csv(tmp_path, name):
    (tmp_path / "a-directory.csv").mkdir()
    assert_one_clear_error(run_cli("check", "--file", name, cwd=tmp_path), f"cannot read proxy file {name}")


def test_database_not_created_yet(tmp_path):
    assert_one_clear_error(run_cli("status", cwd=tmp_path), "does not exist", "proxycheck db upgrade")
    assert not (tmp_path / "state" / "proxycheck.db").exists()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/proxycheck", "Connection refused"),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/proxycheck_no_such_db", "does not exist"),
    ],
)
def test_database_unreachable(tmp_path, url, said):
    proc = run_cli("run", "--once", env={"PROXYCHECK_DATABASE_URL": url}, cwd=tmp_path)
    assert_one_clear_error(proc, "cannot reach the database", said, "check that PostgreSQL is running")


def test_sqlite_locked_by_another_writer(tmp_path):
    assert run_cli("db", "upgrade", cwd=tmp_path).returncode == 0
    holder = sqlite3.connect(tmp_path / "state" / "proxycheck.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        proc = run_cli("import", "http://198.51.100.1:3128", cwd=tmp_path)
        assert_one_clear_error(proc, "is locked by another writer", "use PostgreSQL for several")
        assert run_cli("status", cwd=tmp_path).returncode == 1  # readers still work (WAL)
    finally:
        holder.close()
