"""Engines for SQLite and PostgreSQL, and the one place database errors become ``StorageError``.

Rules:
1. SQLite runs in WAL mode with one *writer* engine that opens every transaction with
   ``BEGIN IMMEDIATE`` (it takes the write lock up front, so ``busy_timeout`` is honoured; a
   deferred transaction that upgrades to a write fails at once with "database is locked" if
   another connection committed in between). Reader engines use plain ``BEGIN`` and never write.
2. PostgreSQL goes through psycopg 3 whatever the URL says (``postgresql://``,
   ``postgres://``), with ``pool_pre_ping`` so a restarted server costs one reconnect.
3. Errors are translated here, once (``handle_error``): cannot connect / connection lost /
   SQLite locked -> ``StorageError``; tables missing -> ``SchemaOutOfDate``. Messages name the
   URL with its password masked and say what to do. Anything else is a bug and propagates.
4. Engines use ``hide_parameters``: a failing statement never puts a proxy password in a log.
5. SQLite's WAL is kept small: the daemon's writer calls ``checkpoint()`` (``wal_checkpoint(TRUNCATE)``)
   after a batch that left it over ``CHECKPOINT_ABOVE`` bytes, and ``journal_size_limit`` bounds what an automatic checkpoint leaves. Left
   to itself SQLite lets the WAL grow to about 4 MB (1000 pages) before it checkpoints, and never
   shrinks it: on a small volume that alone fills the disk.
6. PostgreSQL sessions run at READ COMMITTED whatever the database's
   ``default_transaction_isolation`` says: the claim and lease queries rely on its "a new
   statement sees every commit" (leases.py, worker_leases.py rule 3), and under REPEATABLE READ
   or SERIALIZABLE they would fail with ``SerializationFailure`` instead of waiting.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import ArgumentError

from ..errors import SchemaOutOfDate, StorageError
from ..filemodes import create_file

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_JOURNAL_SIZE_LIMIT = 1 << 20  # bytes the WAL keeps after a checkpoint that could not truncate it
CHECKPOINT_ABOVE = 256 * 1024  # bytes of WAL the writer lets stand after a batch
CHECKPOINT_BUSY_MS = 200  # a checkpoint waits this long for readers, then leaves the rest to the next one
_UPGRADE_HINT = "run `proxycheck db upgrade`"


def database_url_default(state_dir: str | os.PathLike[str]) -> str:
    """The default database: ``sqlite:///<state_dir>/proxycheck.db``."""
    return f"sqlite:///{Path(state_dir) / 'proxycheck.db'}"


def masked_url(url: str | URL) -> str:
    """The URL as it may be printed: password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``."""
    try:
        parsed = make_url(url)
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise ValueError("port out of range")
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StorageError(
            "the database URL is not a URL: use sqlite:////path/to/proxycheck.db or "
            "postgresql://user@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgres" or parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend not in ("sqlite", "postgresql"):
        raise StorageError(
            f"unsupported database {masked_url(parsed)}: proxycheck stores its state in SQLite "
            "(sqlite:////path/to/proxycheck.db) or PostgreSQL (postgresql://user@host/dbname)"
        )
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise StorageError(
            f"unsupported database driver in {masked_url(parsed)}: proxycheck talks to PostgreSQL through "
            "psycopg 3 (postgresql:// or postgresql+psycopg://) and to SQLite through sqlite:///"
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StorageError(
            f"{masked_url(parsed)} is an in-memory SQLite database, which each connection sees "
            "empty: give a file path, e.g. sqlite:////var/lib/proxycheck/proxycheck.db"
        )
    return parsed


def make_engine(
    url: str | URL,
    *,
    writer: bool,
    application_name: str | None = None,
    foreign_keys: bool = True,
) -> Engine:
    """An engine for ``url``. ``writer`` matters on SQLite only (``BEGIN IMMEDIATE``).

    ``foreign_keys=False`` is for Alembic only: SQLite batch migrations copy tables and must not
    cascade while doing so. Dispose the engine when done (``engine.dispose()``).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, writer=writer, foreign_keys=foreign_keys)
    else:
        name = application_name or f"proxycheck@{socket.gethostname()}"
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            pool_recycle=1800,
            hide_parameters=True,
            isolation_level="READ COMMITTED",  # rule 6
            connect_args={"application_name": name[:63], "connect_timeout": 10},
        )
    event.listen(engine, "handle_error", _translate_error)
    return engine


def _create_sqlite_file(path: Path) -> None:
    """Create the database file before SQLite does, with the mode of filemodes.py (others never;
    0660 when the group shares, as under the unit's ``UMask=0007``, else 0600). SQLite would
    create it 0644 minus the umask: every proxy password readable by every user under the usual
    umask 022, while workers in the service's group could not write (reports, counted picks).
    Its -wal and -shm files copy the database file's mode, so this one file is enough.
    """
    if path.parent.is_dir():
        create_file(path)


def _sqlite_engine(url: URL, *, writer: bool, foreign_keys: bool) -> Engine:
    if writer and url.database:
        _create_sqlite_file(Path(url.database))
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )
    pragmas = [
        f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",  # first: switching to WAL may itself be BUSY
        "journal_mode=WAL",
        "synchronous=NORMAL",
        f"journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT}",
        f"foreign_keys={'ON' if foreign_keys else 'OFF'}",
    ]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(f"PRAGMA {pragma}")
        finally:
            cursor.close()

    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def checkpoint(engine: Engine, *, above: int = 0) -> bool:
    """Rule 5: copy SQLite's WAL into the database and truncate it to zero bytes, when it holds
    more than ``above`` bytes. Waits at most ``CHECKPOINT_BUSY_MS`` for readers on older
    snapshots; False when they kept some of it (the next call finishes the job). Does nothing on
    PostgreSQL. Pass the writer engine."""
    if engine.dialect.name != "sqlite":
        return True
    try:
        if os.path.getsize(f"{engine.url.database}-wal") <= above:
            return True
    except FileNotFoundError:
        return True
    with engine.connect() as conn:  # the DB-API connection itself: no BEGIN (a checkpoint runs outside one)
        raw = conn.connection.dbapi_connection
        assert raw is not None
        try:
            raw.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
            try:
                busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                raw.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot checkpoint the SQLite database {engine.url.database} ({_first_line(exc)})") from exc
    return not busy


def _translate_error(context: ExceptionContext) -> None:
    if context.is_pre_ping:
        return  # the pool handles it by reconnecting
    orig = context.original_exception
    url = context.engine.url if context.engine is not None else None
    where = masked_url(url) if url is not None else "the database"
    message = _first_line(orig)
    sqlite = url is not None and url.get_backend_name() == "sqlite"
    if sqlite and url is not None:
        where = f"the SQLite database {url.database}"

    if "no such table" in message or getattr(orig, "sqlstate", None) == "42P01":
        raise SchemaOutOfDate(f"{where} has no proxycheck tables ({message}): {_UPGRADE_HINT}") from orig
    if sqlite and "database is locked" in message:
        raise StorageError(
            f"{where} is locked by another writer (waited up to {SQLITE_BUSY_TIMEOUT_MS // 1000} s): "
            "run only one daemon per SQLite file, or use PostgreSQL for several"
        ) from orig
    if context.connection is None or context.is_disconnect:
        if sqlite:
            raise StorageError(
                f"cannot open {where} ({message}): check that its directory exists and is "
                "writable by the user running proxycheck"
            ) from orig
        raise StorageError(
            f"cannot reach the database at {where} ({message}): check that PostgreSQL is running "
            "and that the host, port, user and database name in the URL are right"
        ) from orig


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
