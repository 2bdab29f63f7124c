"""The daemon's Prometheus metrics: the counters its parts update, and what a scrape reads.

Rules:
1. A scrape reads the fleet and the worker reports through the reader engine (on SQLite the
   writer holds the write lock for every transaction; a scrape must not queue behind it), with
   every anti-captcha code, not the top five ``status`` shows.
2. A scrape never fails because the database blinked: the fleet's gauges are left out, and the
   log says why.
3. The settings are read at each scrape (a SIGHUP may have changed the ban targets, the guard
   rail or the error budgets).
4. Each captcha service's error budget (store/guard.py ``guard_states``) is read per scrape too,
   and left out, like the fleet, when the database cannot say.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .. import store
from ..config import Settings
from ..metrics import DaemonMetrics
from ..guard import GuardState
from ..store.guard import guard_states
from ..store.reports import feedback_summary, guard_rail
from ..verdict import ERROR_NAMES

log = logging.getLogger("proxycheck.daemon")


def daemon_metrics(reader: Any, settings: Callable[[], Settings]) -> DaemonMetrics:
    def fleet():
        try:
            summary = store.status_summary(reader, top=len(ERROR_NAMES))  # every code, not the top 5
            return summary, feedback_summary(reader, guard_rail(settings().worker))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the DB blinked
            log.warning("metrics: cannot read the fleet summary: %s", exc)
            return None

    def guards() -> dict[str, GuardState] | None:
        try:
            return guard_states(reader, settings())
        except Exception as exc:  # noqa: BLE001 - rule 2
            log.warning("metrics: cannot read the error budgets: %s", exc)
            return None

    return DaemonMetrics(fleet, targets=lambda: [t.name for t in settings().targets.ban_targets], guards=guards)
