"""What every command shares: the one error type, settings loading, input loading, and the
database's door for reads. Rules: an error is a ``CliError`` (exit 2), one sentence with the
next step, never quoting a password; reading never creates an empty SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..config import Settings, load_settings
from ..errors import ProxycheckError

if TYPE_CHECKING:
    from ..sources import LoadedProxies

T = TypeVar("T")

EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


class CliError(click.ClickException):
    exit_code = EXIT_USAGE

    def format_message(self) -> str:
        from ..masking import redact

        return redact(self.message)  # our messages never quote a password; this is the second line


def settings_or_exit(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None


config_option = click.option(
    "--config", "-c", "config", metavar="FILE", envvar=None,
    help="TOML config file (default: $PROXYCHECK_CONFIG, then ./proxycheck.toml).",
)


def load_proxies(urls: list[str], files: list[str]) -> LoadedProxies:
    """Proxies from URL arguments and CSV files; bad rows printed (capped), a bad URL fatal."""
    from ..sources import load_inputs

    try:
        loaded = load_inputs(urls, files)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    for line in loaded.error_lines():
        click.echo(f"proxycheck: {line}", err=True)
    return loaded


def echo_capped(lines: list[str], what: str, limit: int = 20) -> None:
    for line in lines[:limit]:
        click.echo(f"proxycheck: {line}", err=True)
    if len(lines) > limit:
        click.echo(f"proxycheck: … and {len(lines) - limit} more {what}", err=True)


def read_database(settings: Settings, read: Callable[[Any], T]) -> T:
    """``read(engine)`` on a reader engine of an existing, up-to-date database; errors as one sentence."""
    from ..store import make_engine
    from ..store.migrate import check_at_head

    url = settings.resolved_database_url
    try:
        require_existing_sqlite(url)
        check_at_head(url)
        engine = make_engine(url, writer=False)
        try:
            return read(engine)
        finally:
            engine.dispose()
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None


def require_existing_sqlite(url: str) -> None:
    """Reading must not create an empty SQLite file where the user expected their database."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and not Path(u.database).exists():
        raise CliError(f"database {u.database} does not exist: run `proxycheck db upgrade` (and check --config / state_dir)")


def mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        from ..masking import mask_argument

        return mask_argument(url)
