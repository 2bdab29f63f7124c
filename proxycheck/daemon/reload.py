"""SIGHUP: apply every setting that can change without a restart, and say what could not.

Rules:
1. Applied at once: ``[targets]``, ``[timeouts]``, ``[probes]`` (a new ``Checker``, self-tested
   at the next heartbeat), ``[check]`` (the next claim), ``[health]`` (the next write),
   ``[worker]`` (retention and metrics), ``[daemon]`` (sources re-synced; a periodic job whose
   interval changed is rescheduled, ``periodic.py``).
2. ``database_url``, ``state_dir`` and ``[http]`` name the daemon's database, lock and socket:
   a change is kept out, and the log names it as needing a restart.
3. A file that does not load keeps the old settings (logged). Whatever happens, the reload ends
   with READY=1, so systemd never waits on a reload that failed.
"""

from __future__ import annotations

import dataclasses
import logging

from ..checker import Checker
from ..config import Settings, load_settings
from ..errors import ProxycheckError
from . import jobs

log = logging.getLogger("proxycheck.daemon")


async def reload(daemon) -> None:
    daemon.notifier.reloading()
    log.info("SIGHUP: reloading %s", daemon.config_path or daemon.settings.source_file or "the configuration")
    try:
        try:
            fresh = load_settings(daemon.config_path)
        except ProxycheckError as exc:
            log.error("configuration not reloaded, keeping the old one: %s", exc)
        else:
            apply(daemon, fresh)
        await jobs.sync_sources(daemon)
    finally:
        daemon.notifier.ready(daemon.status_text())


def apply(daemon, fresh: Settings) -> None:
    old = daemon.settings
    restart = restart_only_changes(old, fresh)
    if daemon.http is not None and fresh.worker != old.worker:
        restart.append("[worker] (for the HTTP endpoint; the daemon itself uses it now)")
    applied = applied_changes(old, fresh)
    new = dataclasses.replace(fresh, database_url=old.database_url, state_dir=old.state_dir, http=old.http)
    if any(getattr(old, s) != getattr(new, s) for s in ("targets", "timeouts", "probes")):
        daemon.monitor.replace_checker(Checker(new))
    daemon.monitor.interval = new.daemon.heartbeat_interval
    daemon.settings = new
    daemon.periodic.reschedule(old.daemon, new.daemon)
    daemon.notifications.reconfigure(new.notify)
    if restart:
        log.warning("changed settings that need a restart (`systemctl restart proxycheck`), kept as they were: %s",
                    ", ".join(restart))
    log.info("reloaded: %s", "applied " + ", ".join(applied) if applied else "no setting changed")
    daemon.dispatcher.wake.set()


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """Top-level keys and ``[http]`` keys whose change needs a restart, as ``[section].key``."""
    changed = [k for k in ("database_url", "state_dir") if getattr(old, k) != getattr(new, k)]
    changed += [f"[http].{f}" for f in ("enabled", "listen", "token") if getattr(old.http, f) != getattr(new.http, f)]
    return changed


def applied_changes(old: Settings, new: Settings) -> list[str]:
    """Sections (and top-level keys) that differ and are applied by a reload."""
    sections = ("targets", "timeouts", "probes", "check", "health", "daemon", "worker", "notify")
    return [f"[{s}]" for s in sections if getattr(old, s) != getattr(new, s)]
