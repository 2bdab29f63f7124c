"""SIGHUP as data: ``plan(old, new)`` says what a reload applies and what needs a restart; the
runner applies the plan (``runner.py``). ``plan`` is pure: settings in, a ``ReloadPlan`` out.

Rules:
1. Applied at once: ``[targets]``, ``[timeouts]``, ``[probes]``, ``[geo]``, ``[check]``'s vantages and
   ``[solver]`` (a new ``Checker``, self-tested at the next heartbeat; a ``[geo]`` file that no longer
   opens fails the load: rule 3), ``[check]``'s concurrency (the next claim), ``[health]`` (the next write),
   ``[worker]`` (retention and metrics), ``[daemon]`` (sources re-synced; a periodic job whose
   interval changed is rescheduled, ``periodic.py``).
2. ``database_url``, ``state_dir`` and ``[http]`` name the daemon's database, lock and socket:
   they are kept as they were, and a change to any of them is named as needing a restart. The
   HTTP endpoint (started when ``[http].enabled``) keeps the ``[worker]`` it started with, so a
   changed ``[worker]`` is named too (the daemon itself uses it at once).
3. A file that does not load keeps the old settings (logged by the runner). Whatever happens, the
   reload ends with READY=1, so systemd never waits on a reload that failed.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from ..config import SECTIONS, Http, Settings

log = logging.getLogger("proxycheck.daemon")

RESTART_ONLY = ("database_url", "state_dir", "http")  # rule 2: top-level keys and one section
APPLIED = tuple(s for s in SECTIONS if s not in RESTART_ONLY)  # rule 1
# What a Checker is built from: whole sections, and [check]'s vantage keys (not its concurrency).
CHECKER = ("targets", "timeouts", "probes", "geo", "solver")
CHECKER_CHECK_KEYS = ("vantage", "source_address", "vantages")


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does: run with ``settings`` from now on (the new file with the restart-only
    keys of the old one), build a new checker if ``new_checker``; ``applied`` and ``restart`` are
    what the log says (``[section]`` and ``[section].key`` names)."""

    settings: Settings
    new_checker: bool
    applied: tuple[str, ...]
    restart: tuple[str, ...]

    def log(self) -> None:
        if self.restart:
            log.warning("changed settings that need a restart (`systemctl restart proxycheck`), kept as they were: %s",
                        ", ".join(self.restart))
        log.info("reloaded: %s", "applied " + ", ".join(self.applied) if self.applied else "no setting changed")


def plan(old: Settings, new: Settings) -> ReloadPlan:
    """The reload from ``old`` (what the daemon runs with) to ``new`` (the file just loaded)."""
    kept = dataclasses.replace(new, **{k: getattr(old, k) for k in RESTART_ONLY})
    restart = [k for k in RESTART_ONLY if k not in SECTIONS and getattr(old, k) != getattr(new, k)]
    restart += [f"[http].{f.name}" for f in dataclasses.fields(Http) if getattr(old.http, f.name) != getattr(new.http, f.name)]
    if old.http.enabled and new.worker != old.worker:
        restart.append("[worker] (for the HTTP endpoint; the daemon itself uses it now)")
    return ReloadPlan(
        settings=kept,
        new_checker=any(getattr(old, s) != getattr(kept, s) for s in CHECKER)
        or any(getattr(old.check, k) != getattr(kept.check, k) for k in CHECKER_CHECK_KEYS),
        applied=tuple(f"[{s}]" for s in APPLIED if getattr(old, s) != getattr(new, s)),
        restart=tuple(restart),
    )
