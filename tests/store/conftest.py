"""Store test fixtures beyond the shared databases of tests/conftest.py (``db_url``,
``migrated_url``, ``writer``): a reader engine, more engines, the test clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from proxycheck.store import make_engine

from .helpers import NOW


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
