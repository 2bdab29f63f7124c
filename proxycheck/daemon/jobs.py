"""The periodic jobs: source sync, retention, own-IP refresh, heartbeat (the [notify] observation
is in notifying.py).

Rules:
1. Each job is a plain coroutine given the parts it uses (the storage, the settings of this
   turn, a wake callback for the dispatcher, the monitor), never the daemon; the runner binds
   them and APScheduler runs them at their configured intervals (``periodic.py``). A storage
   error inside a job is logged and the job waits for its next turn; any other exception is a
   bug that stops the daemon loudly (``runner.py``).
2. A sync logs what it changed, each bad row once (file:line, never a password), and proxies in
   documentation address ranges (``proxy.DOCUMENTATION_NETS``: they can never be healthy). New
   proxies are picked up at once (the dispatcher is woken) and the log says when their first
   checks are due.
3. The heartbeat writes the instance row (``status`` reads it) and refreshes sd_notify's STATUS
   (``publish.py``), and on PostgreSQL takes back the leases of daemons that are not live
   (store/instances.py rule 1).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from .. import store
from ..config import Settings
from ..errors import ProxycheckError
from ..guard import longest_window
from ..proxy import DOCUMENTATION_NETS
from ..sources import read_csv_file
from ..store.instances import STALE_BEATS
from ..store.reports import prune_reports
from .monitor import CheckerMonitor
from .storage import Storage

log = logging.getLogger("proxycheck.daemon")



async def sync_sources(storage: Storage, settings: Settings, rng: random.Random, *, spread: bool,
                       wake: Callable[[], None], monitor: CheckerMonitor) -> bool:
    """Read every ``[daemon].sources`` file and make the database match; True if proxies were added.
    ``spread``: new proxies' first checks are spread over ``[health].interval`` (not for ``--once``)."""
    now = datetime.now(UTC)
    added = False
    for path in settings.daemon.sources:
        try:
            loaded = await asyncio.to_thread(read_csv_file, path)
        except ProxycheckError as exc:
            log.error("source %s not synced: %s", path, exc)
            continue
        for line in loaded.error_lines(note=" (skipped)"):
            log.warning("%s", line)
        proxies = loaded.deduplicated()
        examples = sum(1 for p in proxies if p.documentation_example)
        if examples:
            log.warning("%d of the %d proxies in %s are in documentation address ranges (%s) and can never be healthy; "
                        "put your own proxies in %s",
                        examples, len(proxies), path, ", ".join(map(str, DOCUMENTATION_NETS)), path)
        report = await storage.attempt(store.sync_source, storage.engine, f"csv:{path}", proxies, now,
                                       policy=settings.health, rng=rng, spread=spread,
                                       concurrency=settings.check.concurrency)
        if report is not None and (report.added or report.updated or report.disabled):
            log.info("synced %s: %d added, %d updated, %d disabled", path, report.added, report.updated, report.disabled)
            added = added or bool(report.added)
    if added:
        await announce_first_checks(storage, settings.check.concurrency, wake=wake, monitor=monitor)
    return added


async def announce_first_checks(storage: Storage, concurrency: int, *, wake: Callable[[], None],
                                monitor: CheckerMonitor) -> None:
    """Wake the dispatcher and say when the never-checked proxies will have their first check."""
    wake()
    found = await storage.attempt(store.first_checks_due, storage.engine)
    if not found or not found[0]:
        return
    count, last_due = found
    now = datetime.now(UTC)
    if last_due is not None and last_due.tzinfo is None:
        last_due = last_due.replace(tzinfo=UTC)
    when = "now" if last_due is None or last_due <= now + timedelta(seconds=1) else \
        f"by {last_due.astimezone(UTC):%H:%M:%S} UTC (in {(last_due - now).total_seconds():.0f} s)"
    log.info("%d proxies were never checked: first checks are due %s, %d at a time%s", count, when, concurrency,
             "" if monitor.status.ok else " once the checker is OK")


async def retention(storage: Storage, settings: Settings) -> None:
    d = settings.daemon
    deleted = await storage.attempt(store.apply_retention, storage.engine, datetime.now(UTC),
                                    keep_per_proxy=d.keep_checks_per_proxy, keep_success_days=d.keep_success_days,
                                    keep_failure_days=d.keep_failure_days)
    if deleted:
        log.info("retention removed %d old checks", deleted)
    # Worker reports are evidence like failed checks: kept as long, and never inside the guard rail's
    # window or any error budget's (guard.py: the budgets are counted from them).
    keep = max(d.keep_failure_days * 86400, settings.worker.report_window, longest_window(settings.guard))
    pruned = await storage.attempt(prune_reports, storage.engine, datetime.now(UTC) - timedelta(seconds=keep))
    if pruned:
        log.info("retention removed %d old worker reports", pruned)


async def heartbeat(storage: Storage, publish: Callable[[], Awaitable[None]], *,
                    reclaim: bool, wake: Callable[[], None]) -> None:
    """The instance row and sd_notify's STATUS (``publish``); with ``reclaim`` (PostgreSQL, where
    daemons share the database), the leases of peers that are not live (store/instances.py rule 1)."""
    await publish()
    if reclaim:
        taken = await storage.attempt(store.reclaim_stale_leases, storage.engine)
        if taken:
            log.warning("took back %d leases of daemons stopped or silent for more than %d of their heartbeats; "
                        "their proxies are due again", taken, STALE_BEATS)
            wake()
