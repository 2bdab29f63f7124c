"""Databases for the store tests: real SQLite files and a real PostgreSQL, migrated by Alembic.

``db_url`` runs a test on both: a SQLite file in ``tmp_path``, and a fresh schema inside a
throwaway database ``proxycheck_test_<random>`` (created once per session, dropped at the end)
on ``PROXYCHECK_TEST_PG_URL``. If PostgreSQL is unreachable its tests are skipped, loudly (a
banner at the end of the run); with ``PROXYCHECK_REQUIRE_PG=1`` (CI) they fail instead.
Databases are migrated with ``migrate.upgrade``, never ``create_all``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from proxycheck.store import make_engine, migrate

from .helpers import NOW

PG_URL = os.environ.get("PROXYCHECK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PROXYCHECK_REQUIRE_PG") == "1"

_pg_unavailable: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_unavailable:
        terminalreporter.write_sep(
            "!", f"PostgreSQL store tests were SKIPPED: {_pg_unavailable[0]}", red=True, bold=True
        )
        terminalreporter.write_line(
            "set PROXYCHECK_TEST_PG_URL, or PROXYCHECK_REQUIRE_PG=1 to make this an error"
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a throwaway PostgreSQL database for this session."""
    admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"proxycheck_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        where = make_url(PG_URL).render_as_string(hide_password=True)
        reason = f"cannot reach {where}: {str(exc.orig).strip().splitlines()[0]}"
        if REQUIRE_PG:
            pytest.fail(f"PROXYCHECK_REQUIRE_PG=1 but {reason}")
        _pg_unavailable.append(reason)
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A fresh, empty schema in the session database (first and only entry on search_path)."""
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = make_url(pg_database).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'proxycheck.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def migrated_url(db_url: str) -> str:
    migrate.upgrade(db_url)
    return db_url


@pytest.fixture
def writer(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url, writer=True)
    yield engine
    engine.dispose()


@pytest.fixture
def reader(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url, writer=False)
    yield engine
    engine.dispose()


@pytest.fixture
def engine_factory(migrated_url: str) -> Iterator[Callable[..., Engine]]:
    """More engines on the same database (concurrency tests); all disposed at the end."""
    engines: list[Engine] = []

    def factory(*, writer: bool = True) -> Engine:
        engines.append(make_engine(migrated_url, writer=writer))
        return engines[-1]

    yield factory
    for engine in engines:
        engine.dispose()


@pytest.fixture
def at() -> Callable[..., datetime]:
    """``at(seconds=…, days=…)``: the test clock, offsets from a fixed instant."""
    return lambda **delta: NOW + timedelta(**delta)
