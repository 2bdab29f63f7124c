"""Databases and a simulated daemon for the worker API tests.

The databases are tests/conftest.py's (``db_url``: SQLite and PostgreSQL, migrated by Alembic).
Every test runs in an empty directory with no ``PROXYCHECK_*`` variables, so no config leaks in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from proxycheck import worker
from proxycheck.store import migrate
from proxycheck.worker import ProxyPool, WorkerSettings


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    url = f"sqlite:///{tmp_path / 'proxycheck.db'}"
    migrate.upgrade(url)
    return url


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
