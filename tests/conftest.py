"""Shared fixtures. The loopback world (tests/world) is started once per session, on demand.
Databases: ``db_url`` runs a test on a SQLite file and on a fresh schema in a throwaway
PostgreSQL database (pgdb.py), migrated by Alembic (``migrated_url``), never ``create_all``.

Without squid, tinyproxy, microsocks or pproxy the world tests are skipped with a loud reason;
with PROXYCHECK_REQUIRE_WORLD=1 (set in CI) they fail instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from daemons import RestartableJudge
from pgdb import UNAVAILABLE, throwaway_database, throwaway_schema
from sqlalchemy import Engine
from world import World, missing_software, start_world

from proxycheck.store import make_engine, migrate


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if UNAVAILABLE:
        terminalreporter.write_sep("!", f"PostgreSQL tests were SKIPPED: {UNAVAILABLE[0]}", red=True, bold=True)
        terminalreporter.write_line("set PROXYCHECK_TEST_PG_URL, or PROXYCHECK_REQUIRE_PG=1 to make this an error")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses the world is a world test, marked or not: `-m "not world"` must skip it.
    for item in items:
        if "world" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.world)


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    """Judge + real proxies + fault servers on 127.0.0.0/8; see ``world.EXPECTATIONS``."""
    missing = missing_software()
    if missing:
        what = "; ".join(missing)
        if os.environ.get("PROXYCHECK_REQUIRE_WORLD") == "1":
            pytest.fail(f"PROXYCHECK_REQUIRE_WORLD=1 but the loopback world cannot start, missing: {what}", pytrace=False)
        pytest.skip(f"!!! LOOPBACK WORLD NOT AVAILABLE, world tests NOT RUN: missing {what}")
    built = start_world()
    try:
        yield built
    finally:
        built.stop()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a throwaway PostgreSQL database for this session."""
    with throwaway_database("proxycheck_test") as url:
        yield url


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A fresh, empty schema in the session database (first and only entry on search_path)."""
    with throwaway_schema(pg_database) as url:
        yield url


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
def restartable_judge(world) -> Iterator[RestartableJudge]:
    """A running judge that a test can kill and start again on the same ports (daemons.RestartableJudge)."""
    j = RestartableJudge(world)
    j.start()
    yield j
    if j.judge is not None:
        j.kill()
