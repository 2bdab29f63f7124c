"""The ``[worker]`` config section as the worker API sees it, found the way the daemon finds it.

Rules:
1. One file, one loader: ``config.load_settings`` (``--config``, else ``$PROXYCHECK_CONFIG``, else
   ``./proxycheck.toml``; ``$PROXYCHECK_DATABASE_URL`` wins), so the daemon and its workers can
   never disagree about the database or the ``[worker]`` keys.
2. ``WorkerSettings`` is ``config.Worker`` with the same checks when built by hand
   (``ProxyPool(settings=WorkerSettings(max_age=60))``), raising ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from ..config import STRATEGIES, Settings, Worker, check_worker, load_settings


@dataclasses.dataclass(frozen=True)
class WorkerSettings(Worker):
    """``[worker]`` built in code; validated like the file's section."""

    def __post_init__(self) -> None:
        check_worker(self)


def load(config: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> tuple[Settings, Worker]:
    """The daemon's settings and their ``[worker]`` section."""
    settings = load_settings(str(config) if config is not None else None, environ=dict(environ) if environ is not None else None)
    return settings, settings.worker


__all__ = ["STRATEGIES", "WorkerSettings", "load"]
