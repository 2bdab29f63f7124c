"""Commands that set up: ``config check`` (validate a file), ``db upgrade`` and ``db current``
(the schema, by Alembic). Rule: only ``db upgrade`` may create a SQLite file (and its directory)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import ProxycheckError
from .common import EXIT_UNHEALTHY, CliError, config_option, mask_url, require_existing_sqlite, settings_or_exit


@click.group("config")
def config_group() -> None:
    """Validate the configuration.

    \b
    Example:
      proxycheck config check /etc/proxycheck/proxycheck.toml
    """


@config_group.command("check")
@click.argument("file", type=click.Path())
def config_check(file: str) -> None:
    """Validate FILE and name any bad key.

    \b
    Example:
      proxycheck config check proxycheck.toml
    """
    if not Path(file).exists():
        raise CliError(f"config file {file} does not exist")
    settings = settings_or_exit(file)
    click.echo(f"{file}: OK (database: {mask_url(settings.resolved_database_url)})")


@click.group()
def db() -> None:
    """Create or migrate the database.

    \b
    Examples:
      proxycheck db upgrade
      proxycheck db current --config /etc/proxycheck/proxycheck.toml
    """


@db.command("upgrade")
@config_option
def db_upgrade(config: str | None) -> None:
    """Create or migrate the database to the latest schema (safe to repeat).

    \b
    Example:
      PROXYCHECK_DATABASE_URL=postgresql://proxycheck@db/proxycheck proxycheck db upgrade
    """
    from ..store import upgrade

    settings = settings_or_exit(config)
    url = settings.resolved_database_url
    _ensure_sqlite_dir(url)
    try:
        before, after = upgrade(url)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    where = mask_url(url)
    if before == after:
        click.echo(f"{where}: already at {after}")
    else:
        click.echo(f"{where}: migrated {before or 'empty'} -> {after}")


@db.command("current")
@config_option
def db_current(config: str | None) -> None:
    """Print the database's schema revision and whether it is the latest.

    \b
    Example:
      proxycheck db current --config /etc/proxycheck/proxycheck.toml
    Exit: 0 at the latest revision, 1 when `proxycheck db upgrade` is needed.
    """
    from ..store import current_revision, head_revision

    settings = settings_or_exit(config)
    try:
        require_existing_sqlite(settings.resolved_database_url)
        current = current_revision(settings.resolved_database_url)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    head = head_revision()
    click.echo(f"{current or 'empty'} (latest: {head})" + ("" if current == head else "; run `proxycheck db upgrade`"))
    sys.exit(0 if current == head else EXIT_UNHEALTHY)


def _ensure_sqlite_dir(url: str) -> None:
    """The state directory, created private (filemodes.py: 0700, or 0770 when the group shares)."""
    from sqlalchemy.engine import make_url

    from ..filemodes import make_state_dir

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        make_state_dir(Path(u.database).parent)


COMMANDS = (config_group, db)
