"""Engines: SQLite settings and WAL behaviour, URL handling, and errors translated to ours."""

from __future__ import annotations

import threading
from pathlib import Path
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, text, update

from proxycheck.errors import SchemaOutOfDate, StorageError
from proxycheck.store import database_url_default, make_engine, masked_url, sync_source
from proxycheck.store.engine import SQLITE_JOURNAL_SIZE_LIMIT, checkpoint, normalize_url
from proxycheck.store.models import InstanceRow, ProxyRow

from .helpers import NOW, proxy


@pytest.fixture
def sqlite_url(tmp_path):
    from proxycheck.store import migrate

    url = database_url_default(tmp_path)
    migrate.upgrade(url)
    return url


def test_default_database_lives_in_the_state_dir(tmp_path):
    assert database_url_default(tmp_path) == f"sqlite:///{tmp_path}/proxycheck.db"
    assert database_url_default("/var/lib/proxycheck") == "sqlite:////var/lib/proxycheck/proxycheck.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:pw@db/pc", "postgresql+psycopg://u:pw@db/pc"),
        ("postgres://u@db/pc", "postgresql+psycopg://u@db/pc"),
        ("postgresql+psycopg://u@db/pc", "postgresql+psycopg://u@db/pc"),
        ("sqlite:////var/lib/proxycheck/proxycheck.db", "sqlite:////var/lib/proxycheck/proxycheck.db"),
    ],
)
def test_urls_are_normalised_to_our_drivers(url, expected):
    assert normalize_url(url).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@db/pc", "unsupported database mysql://u@db/pc"),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:///:memory:", "in-memory SQLite"),
        ("not a url", "is not a URL"),
    ],
)
def test_unusable_urls_are_refused(url, message):
    with pytest.raises(StorageError, match=message):
        make_engine(url, writer=True)


def test_masked_url_hides_the_password():
    assert masked_url("postgresql://u:s3cret@db/pc") == "postgresql://u:***@db/pc"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://u:s3cret@127.0.0.1:1/pc",
            r"cannot reach the database at postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/pc",
        ),
        (
            "sqlite:////nonexistent/dir/proxycheck.db",
            "cannot open the SQLite database /nonexistent/dir/proxycheck.db",
        ),
    ],
)
def test_connection_errors_become_storage_errors(url, message):
    engine = make_engine(url, writer=False)
    try:
        with pytest.raises(StorageError, match=message) as info, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert "s3cret" not in str(info.value)
    finally:
        engine.dispose()


def test_an_unmigrated_database_says_to_upgrade(db_url):
    engine = make_engine(db_url, writer=True)
    try:
        with pytest.raises(SchemaOutOfDate, match="run `proxycheck db upgrade`"), engine.begin() as conn:
            conn.execute(select(ProxyRow.id))
    finally:
        engine.dispose()


def test_sqlite_pragmas(sqlite_url):
    engine = make_engine(sqlite_url, writer=True)
    try:
        with engine.connect() as conn:
            pragmas = {
                p: conn.exec_driver_sql(f"PRAGMA {p}").scalar()
                for p in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys", "journal_size_limit")
            }
    finally:
        engine.dispose()
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 10000, "synchronous": 1, "foreign_keys": 1,
                       "journal_size_limit": SQLITE_JOURNAL_SIZE_LIMIT}


def test_a_checkpoint_truncates_the_wal_past_its_threshold_and_keeps_the_busy_timeout(sqlite_url):
    """engine.py rule 5; the daemon's WAL on a real small disk is tests/test_daemon_disk.py."""
    writer = make_engine(sqlite_url, writer=True)
    wal = Path(f"{writer.url.database}-wal")
    try:
        sync_source(writer, "s", [proxy(i) for i in range(300)], NOW)
        grown = wal.stat().st_size
        assert grown > 0
        assert checkpoint(writer, above=grown) is True and wal.stat().st_size == grown  # under the threshold: left
        assert checkpoint(writer) is True and wal.stat().st_size == 0
        with writer.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
        sync_source(writer, "s", [proxy(i) for i in range(301)], NOW)  # still writes after it
    finally:
        writer.dispose()
    postgres = make_engine("postgresql://nobody@127.0.0.1:1/none", writer=True)
    assert checkpoint(postgres) is True  # nothing to do, and no connection made
    postgres.dispose()


def test_sqlite_readers_read_while_the_writer_holds_a_write_transaction(sqlite_url):
    writer = make_engine(sqlite_url, writer=True)
    reader = make_engine(sqlite_url, writer=False)
    try:
        sync_source(writer, "s", [proxy(1)], NOW)
        with writer.begin() as w:
            w.execute(update(ProxyRow).values(label="uncommitted"))
            started = time.monotonic()
            with reader.begin() as r:
                assert r.execute(select(ProxyRow.label)).scalar() is None  # the last committed state
            assert time.monotonic() - started < 1  # not waiting for the writer
        with reader.begin() as r:
            assert r.execute(select(ProxyRow.label)).scalar() == "uncommitted"
    finally:
        writer.dispose()
        reader.dispose()


def test_a_second_sqlite_writer_waits_instead_of_failing(sqlite_url):
    # BEGIN IMMEDIATE takes the write lock up front, so busy_timeout applies; a deferred
    # transaction upgrading to a write would fail at once with "database is locked".
    first = make_engine(sqlite_url, writer=True)
    second = make_engine(sqlite_url, writer=True)
    try:
        sync_source(first, "s", [proxy(1)], NOW)
        holding = threading.Event()
        errors: list[BaseException] = []

        def hold() -> None:
            try:
                with first.begin() as conn:
                    conn.execute(select(ProxyRow.id)).all()  # read first: the trap's shape
                    holding.set()
                    time.sleep(0.5)
                    conn.execute(update(ProxyRow).values(label="first"))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t = threading.Thread(target=hold)
        t.start()
        holding.wait(5)
        started = time.monotonic()
        with second.begin() as conn:
            conn.execute(select(ProxyRow.label)).all()
            conn.execute(update(ProxyRow).values(label="second"))
        waited = time.monotonic() - started
        t.join()
        assert errors == []
        assert waited > 0.2
        with second.connect() as conn:
            assert conn.execute(select(ProxyRow.label)).scalar() == "second"
    finally:
        first.dispose()
        second.dispose()


def test_datetimes_are_aware_utc_on_the_way_out_and_naive_ones_are_refused(writer):
    berlin = timezone(timedelta(hours=1))
    local = datetime(2026, 3, 1, 13, 0, tzinfo=berlin)
    with writer.begin() as conn:
        conn.execute(
            insert(InstanceRow).values(
                id="x", hostname="h", pid=1, started_at=local, heartbeat_at=local, own_ips=[]
            )
        )
        stored = conn.execute(select(InstanceRow.started_at)).scalar()
    assert stored == local and stored.tzinfo is timezone.utc and stored.hour == 12
    with pytest.raises(Exception, match="naive datetime"), writer.begin() as conn:
        conn.execute(update(InstanceRow).values(heartbeat_at=datetime(2026, 3, 1, 12, 0)))
