"""Databases and a simulated daemon for the worker API tests.

Same tiers as tests/store: ``db_url`` runs a test on a SQLite file and on a fresh schema in a
throwaway PostgreSQL database (``PROXYCHECK_TEST_PG_URL``; skipped loudly when unreachable,
an error with ``PROXYCHECK_REQUIRE_PG=1``), migrated by Alembic, never ``create_all``. Every test
runs in an empty directory with no ``PROXYCHECK_*`` variables, so no config leaks in.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from proxycheck import worker
from proxycheck.store import make_engine, migrate
from proxycheck.worker import ProxyPool, WorkerSettings

PG_URL = os.environ.get("PROXYCHECK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PROXYCHECK_REQUIRE_PG") == "1"

_pg_unavailable: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_unavailable:
        terminalreporter.write_sep(
            "!", f"PostgreSQL worker tests were SKIPPED: {_pg_unavailable[0]}", red=True, bold=True
        )


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"proxycheck_worker_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        reason = f"cannot reach {make_url(PG_URL).render_as_string(hide_password=True)}: {str(exc.orig).strip().splitlines()[0]}"
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
    schema = f"w_{secrets.token_hex(6)}"
    admin = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield make_url(pg_database).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'proxycheck.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    url = f"sqlite:///{tmp_path / 'proxycheck.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def migrated_url(db_url: str) -> str:
    migrate.upgrade(db_url)
    return db_url


@pytest.fixture
def writer(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url, writer=True)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """No config file or PROXYCHECK_* variable from outside; no default pool left behind."""
    for name in list(os.environ):
        if name.startswith("PROXYCHECK_") and not name.startswith("PROXYCHECK_TEST_") and name != "PROXYCHECK_REQUIRE_PG":
            monkeypatch.delenv(name)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    yield
    if worker._default is not None:
        worker._default.close()
        worker._default = None


@pytest.fixture
def make_pool(migrated_url: str) -> Iterator[Callable[..., ProxyPool]]:
    """``make_pool(snapshot_seconds=..., clock=..., **settings)``: pools on the test database."""
    pools: list[ProxyPool] = []

    def factory(*, clock: Any = None, **settings: Any) -> ProxyPool:
        kwargs = {"clock": clock} if clock is not None else {}
        pools.append(ProxyPool(migrated_url, settings=WorkerSettings(**settings), **kwargs))
        return pools[-1]

    yield factory
    for pool in pools:
        pool.close()
