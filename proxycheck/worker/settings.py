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

from ..config import STRATEGIES, Settings, Worker, load_settings
from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class WorkerSettings(Worker):
    """``[worker]`` built in code; validated like the file's section."""

    def __post_init__(self) -> None:
        for name in ("max_age", "report_window"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"[worker].{name} must be positive (seconds), not {getattr(self, name)}")
        for name in ("snapshot_seconds", "reprobe_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"[worker].{name} must not be negative, not {getattr(self, name)}")
        if not 0 < self.max_reported_percent <= 100:
            raise ConfigError(f"[worker].max_reported_percent must be in (0, 100], not {self.max_reported_percent}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"[worker].strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        return {f.name: f.metadata["doc"] for f in dataclasses.fields(cls)}


def load(config: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> tuple[Settings, Worker]:
    """The daemon's settings and their ``[worker]`` section."""
    settings = load_settings(str(config) if config is not None else None, environ=dict(environ) if environ is not None else None)
    return settings, settings.worker


__all__ = ["STRATEGIES", "WorkerSettings", "load"]
