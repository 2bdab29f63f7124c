"""The daemon's side of ``[notify]``: observe its own state periodically and hand it to the
notifier (``proxycheck/notify``), whose delivery task runs beside the dispatcher.

Rules:
1. One observation per heartbeat (``periodic.py``): the checker's state, the fleet's counts by
   state (one ``status_summary`` read on the reader engine), the targets that cannot judge
   (``Checker.notes``, what /healthz names) and, from the error budgets, each guard's state.
   A database that does not answer skips the observation (the storage outage has its own log line);
   the next one compares with the last that worked.
2. While the checker is degraded its self-test knows nothing about single targets: the targets
   keep what the last observation said, so a degraded spell is one message, not one per target.
3. The observation only queues messages; delivery is the notifier's own task (never awaited here).
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import store
from ..config import Settings
from ..guard import GuardState
from ..notify import Notifications, Snapshot
from ..store.guard import guard_states
from ..selftest import CheckerStatus
from .monitor import CheckerMonitor
from .storage import Storage

def snapshot(status: CheckerStatus, notes: Mapping[str, str], counts: Mapping[str, int], last: Snapshot | None,
             guards: Mapping[str, GuardState]) -> Snapshot:
    """Pure: the checker's ``status`` and ``notes`` (``Checker.notes``), the fleet's ``counts`` by
    state, the ``last`` observation (rule 2) and the guards' states."""
    ok = status.ok
    unable = dict(notes) if ok else dict(last.unable if last else {})  # rule 2
    return Snapshot(checker_ok=ok, checker_reason="" if ok else status.reason,
                    healthy=counts.get("healthy", 0), unhealthy=counts.get("unhealthy", 0), unknown=counts.get("unknown", 0),
                    unable=unable, guards=dict(guards))


async def observe(notifier: Notifications, storage: Storage, monitor: CheckerMonitor, settings: Settings) -> None:
    """The periodic job (rule 1)."""
    if not notifier.settings.enabled:
        return
    summary = await storage.attempt(store.status_summary, storage.reader)
    guards = await storage.attempt(guard_states, storage.reader, settings)
    if summary is None or guards is None:
        return
    notifier.observe(snapshot(monitor.status, monitor.checker.notes, summary.counts, notifier.last, guards))
