"""Schema migrations: run the Alembic tree shipped as ``proxycheck.migrations``.

Rules:
1. The tree is found through the installed package (``proxycheck.migrations.__path__``), so
   ``proxycheck db upgrade`` works from a wheel as well as from a checkout; no alembic.ini.
2. Migrations run on a connection from our own engine (same URL handling and PRAGMAs), with
   SQLite foreign keys off (batch migrations copy tables) and, on PostgreSQL, under a
   transaction-scoped advisory lock so two instances starting together do not race.
3. The daemon and CLI refuse to work on a schema that is not at head (``check_at_head``); the
   error names the command that fixes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, text

from ..errors import SchemaOutOfDate
from .engine import make_engine, masked_url

# pg_advisory_xact_lock key held while upgrading ("prox" in ASCII).
MIGRATION_LOCK_ID = 0x70726F78
_UPGRADE_HINT = "run `proxycheck db upgrade`"


def script_location() -> str:
    """The directory of the installed ``proxycheck.migrations`` package."""
    import proxycheck.migrations

    return str(proxycheck.migrations.__path__[0])


def alembic_config(engine_or_connection: Engine | Connection | None = None) -> Config:
    """An Alembic ``Config`` for our tree; ``env.py`` migrates the given engine or connection."""
    cfg = Config()
    # Config values go through ConfigParser interpolation: a '%' in a path must be doubled.
    cfg.set_main_option("script_location", script_location().replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if engine_or_connection is not None:
        cfg.attributes["connection"] = engine_or_connection
    return cfg


def head_revision() -> str:
    """The revision this version of proxycheck expects."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"the migration tree has several heads: {heads}"
    return heads[0]


def upgrade(url: str | URL | Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the schema to ``revision``; returns the revisions (before, after)."""
    with _migration_engine(url) as engine, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        before = _current(conn)
        command.upgrade(alembic_config(conn), revision)
        return before, _current(conn)


def stamp(url: str | URL | Engine, revision: str) -> None:
    """Record ``revision`` as current without running anything (tests, and repairs by hand)."""
    with _migration_engine(url) as engine, engine.begin() as conn:
        command.stamp(alembic_config(conn), revision)


def current_revision(url: str | URL | Engine) -> str | None:
    """The database's revision; None for an empty database."""
    with _reader(url) as engine, engine.connect() as conn:
        return _current(conn)


def check_at_head(url: str | URL | Engine) -> None:
    """Raise ``SchemaOutOfDate`` unless the schema is exactly at this code's head revision."""
    with _reader(url) as engine, engine.connect() as conn:
        current = _current(conn)
        where = masked_url(engine.url)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaOutOfDate(f"database schema is empty ({where}), expected {head}: {_UPGRADE_HINT}")
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current not in known:
        raise SchemaOutOfDate(
            f"database schema is at {current}, which this version of proxycheck does not know "
            f"(it expects {head}): upgrade proxycheck, or point it at another database"
        )
    raise SchemaOutOfDate(f"database schema is at {current}, expected {head}: {_UPGRADE_HINT}")


def _current(conn: Connection) -> str | None:
    heads = MigrationContext.configure(conn).get_current_heads()
    return heads[0] if heads else None


@contextmanager
def _migration_engine(url: str | URL | Engine) -> Iterator[Engine]:
    # Always a dedicated engine: migrations need SQLite foreign keys off, which must not leak
    # into the caller's pooled connections.
    if isinstance(url, Engine):
        url = url.url
    engine = make_engine(url, writer=True, foreign_keys=False)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _reader(url: str | URL | Engine) -> Iterator[Engine]:
    if isinstance(url, Engine):
        yield url
        return
    engine = make_engine(url, writer=False)
    try:
        yield engine
    finally:
        engine.dispose()


def make_revision(url: str, message: str, *, autogenerate: bool = True) -> None:
    """Developers: write ``migrations/versions/<next>_<slug>.py`` (compared against ``url``,
    which must be at head). Read and clean the result; keep it portable."""
    script = ScriptDirectory.from_config(alembic_config())
    next_id = f"{max((int(r.revision) for r in script.walk_revisions()), default=0) + 1:04d}"
    with _migration_engine(url) as engine, engine.begin() as conn:
        command.revision(alembic_config(conn), message=message, autogenerate=autogenerate, rev_id=next_id)


if __name__ == "__main__":  # python -m proxycheck.store.migrate revision -m "..." --url ...
    import argparse

    parser = argparse.ArgumentParser(prog="python -m proxycheck.store.migrate")
    parser.add_argument("action", choices=["revision", "upgrade", "current"])
    parser.add_argument("--url", required=True)
    parser.add_argument("-m", "--message", default="change")
    parser.add_argument("--empty", action="store_true", help="no autogenerate")
    args = parser.parse_args()
    if args.action == "revision":
        make_revision(args.url, args.message, autogenerate=not args.empty)
    elif args.action == "upgrade":
        print(upgrade(args.url))
    else:
        print(current_revision(args.url))
