"""The ``[worker]`` config section as the worker API sees it, found the way the daemon finds it.

Rules:
1. One file, one loader: ``config.load_settings`` (``--config``, else ``$PROXYCHECK_CONFIG``, else
   ``./proxycheck.toml``; ``$PROXYCHECK_DATABASE_URL`` wins), so the daemon and its workers can
   never disagree about the database or the ``[worker]`` keys.
2. A worker that was given no database (no ``configure(database_url=...)``, no
   ``$PROXYCHECK_DATABASE_URL``) and finds no config file gets ``NoConfiguration``, naming where
   it looked and what to set, unless the defaults' SQLite database exists (a daemon run with no
   config from the same directory). Never a storage error about a directory nobody chose.
3. ``WorkerSettings`` is ``config.Worker`` with the same checks when built by hand
   (``ProxyPool(settings=WorkerSettings(max_age=60))``), raising ``ConfigError``. Its
   ``max_age`` defaults to None: "3 × ``[health].interval``" of the loaded settings (the
   defaults' when there is no config file), the same rule as the file's ``[worker]`` section.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url

from ..config import DEFAULT_CONFIG_FILE, STRATEGIES, Settings, Worker, check_worker, load_settings
from ..config_keys import coerce
from ..errors import ConfigError


_MAX_AGE = next(f for f in dataclasses.fields(Worker) if f.name == "max_age")


class NoConfiguration(ConfigError):
    """A worker found neither a config file nor a database URL (rule 2)."""


@dataclasses.dataclass(frozen=True)
class WorkerSettings(Worker):
    """``[worker]`` built in code; validated like the file's section. ``max_age=None``: 3 ×
    ``[health].interval`` (rule 3)."""

    max_age: float | None = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        check_worker(self)  # every key but max_age, whose declaration is Worker's:
        if self.max_age is not None:  # None is resolved when the config is loaded
            coerce(float, self.max_age, _MAX_AGE.metadata, "[worker].max_age")

    def resolved(self, settings: Settings) -> WorkerSettings:
        """With ``max_age`` filled in from ``settings`` (rule 3)."""
        if self.max_age is not None:
            return self
        return dataclasses.replace(self, max_age=3 * settings.health.interval)


def load(
    config: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    database_given: bool = False,
) -> tuple[Settings, Worker]:
    """The daemon's settings and their ``[worker]`` section (rule 2 when nothing is found)."""
    env = os.environ if environ is None else environ
    settings = load_settings(str(config) if config is not None else None, environ=dict(env))
    if settings.source_file is None and not database_given and not env.get("PROXYCHECK_DATABASE_URL"):
        default_db = make_url(settings.resolved_database_url).database
        if not default_db or not Path(default_db).exists():
            raise NoConfiguration(
                "no configuration found: $PROXYCHECK_CONFIG is not set, there is no ./"
                f"{DEFAULT_CONFIG_FILE} in {Path.cwd()}, $PROXYCHECK_DATABASE_URL is not set, and the default "
                f"database {default_db} does not exist. Set PROXYCHECK_CONFIG to the daemon's config file "
                "(e.g. /etc/proxycheck/proxycheck.toml), or PROXYCHECK_DATABASE_URL, or call "
                "proxycheck.configure(database_url=...)")
    return settings, settings.worker


def http_token(config: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The HTTP endpoint's bearer token, for a worker that talks HTTP: ``$PROXYCHECK_TOKEN``,
    then ``[http].token`` of the config (found as above), then ``<state_dir>/http-token``.
    Raises ``ConfigError`` saying where it looked."""
    from ..http_token import worker_token

    env = os.environ if environ is None else environ
    settings = load_settings(str(config) if config is not None else None, environ=dict(env))
    return worker_token(settings, env)


__all__ = ["STRATEGIES", "NoConfiguration", "WorkerSettings", "http_token", "load"]
