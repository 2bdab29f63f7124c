"""Throwaway PostgreSQL databases and schemas for tests, on ``PROXYCHECK_TEST_PG_URL``.

Unreachable PostgreSQL skips the test loudly (a banner at the end of the run, see
``tests/conftest.py``); with ``PROXYCHECK_REQUIRE_PG=1`` (CI) it fails instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

PG_URL = os.environ.get("PROXYCHECK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PROXYCHECK_REQUIRE_PG") == "1"
UNAVAILABLE: list[str] = []  # why PostgreSQL tests were skipped, for the end-of-run banner


def admin_engine():
    return create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """URL of a new database ``<prefix>_<random>``, dropped (even with open connections) afterwards."""
    admin = admin_engine()
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        where = make_url(PG_URL).render_as_string(hide_password=True)
        reason = f"cannot reach {where}: {str(exc.orig).strip().splitlines()[0]}"
        if REQUIRE_PG:
            pytest.fail(f"PROXYCHECK_REQUIRE_PG=1 but {reason}")
        UNAVAILABLE.append(reason)
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def throwaway_schema(database_url: str) -> Iterator[str]:
    """URL of ``database_url`` with a fresh, empty schema as the only entry on search_path."""
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
