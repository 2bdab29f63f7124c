"""Alembic environment for proxycheck (run through ``proxycheck.store.migrate``, not alembic.ini).

``config.attributes["connection"]`` carries the connection to migrate, opened by
``migrate.upgrade`` with proxycheck's own engine settings (and, on PostgreSQL, inside the advisory
lock). Without one, ``sqlalchemy.url`` from the config is used. ``render_as_batch`` makes
autogenerate emit ``batch_alter_table`` blocks, which SQLite needs and PostgreSQL ignores.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine

from proxycheck.store.models import UTCDateTime, metadata

config = context.config
target_metadata = metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    # Revisions must not import the models (they change; old revisions must not), so our
    # TypeDecorator is rendered as the plain type it stores.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        _run(connectable)
        return
    if connectable is None:
        from proxycheck.store.engine import make_engine

        engine: Engine = make_engine(
            config.get_main_option("sqlalchemy.url") or "", writer=True, foreign_keys=False
        )
    else:
        engine = connectable
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        if connectable is None:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
