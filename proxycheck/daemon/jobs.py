"""The periodic jobs: source sync, retention, own-IP refresh, heartbeat.

Rules:
1. Each job is a plain coroutine given the daemon; APScheduler runs it at its configured interval
   (``periodic.py``). A storage error inside a job is logged and the job waits for its next
   turn; any other exception is a bug that stops the daemon loudly (``runner.py``).
2. A sync logs what it changed, each bad row once (file:line, never a password), and proxies in
   documentation address ranges (they can never be healthy). New proxies are picked up at once
   (the dispatcher is woken) and the log says when their first checks are due.
3. The heartbeat writes the instance row (``status`` reads it), on PostgreSQL takes back the
   leases of daemons that are not live (store/instances.py rule 1), and refreshes sd_notify's STATUS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from datetime import UTC, datetime, timedelta

from .. import store
from ..config import Settings
from ..errors import ProxycheckError
from ..proxy import Proxy
from ..sources import read_csv_file
from ..store.instances import STALE_BEATS
from ..store.reports import prune_reports

log = logging.getLogger("proxycheck.daemon")

DOC_RANGES = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))


def in_documentation_range(proxy: Proxy) -> bool:
    try:
        ip = ipaddress.ip_address(proxy.host)
    except ValueError:
        return False
    return any(ip in net for net in DOC_RANGES if net.version == ip.version)


async def sync_sources(daemon) -> bool:
    """Read every ``[daemon].sources`` file and make the database match; True if proxies were added."""
    settings: Settings = daemon.settings
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
        examples = sum(1 for p in proxies if in_documentation_range(p))
        if examples:
            log.warning("%d of the %d proxies in %s are in documentation address ranges (192.0.2.0/24, 198.51.100.0/24, "
                        "203.0.113.0/24, 2001:db8::/32) and can never be healthy; put your own proxies in %s",
                        examples, len(proxies), path, path)
        report = await daemon.storage.attempt(store.sync_source, daemon.storage.engine, f"csv:{path}", proxies, now,
                                              policy=settings.health, rng=daemon.rng, spread=not daemon.once,
                                              concurrency=settings.check.concurrency)
        if report is not None and (report.added or report.updated or report.disabled):
            log.info("synced %s: %d added, %d updated, %d disabled", path, report.added, report.updated, report.disabled)
            added = added or bool(report.added)
    if added:
        await announce_first_checks(daemon)
    return added


async def announce_first_checks(daemon) -> None:
    """Wake the dispatcher and say when the never-checked proxies will have their first check."""
    daemon.dispatcher.wake.set()
    found = await daemon.storage.attempt(store.first_checks_due, daemon.storage.engine)
    if not found or not found[0]:
        return
    count, last_due = found
    now = datetime.now(UTC)
    if last_due is not None and last_due.tzinfo is None:
        last_due = last_due.replace(tzinfo=UTC)
    when = "now" if last_due is None or last_due <= now + timedelta(seconds=1) else \
        f"by {last_due.astimezone(UTC):%H:%M:%S} UTC (in {(last_due - now).total_seconds():.0f} s)"
    pace = daemon.settings.check.concurrency
    log.info("%d proxies were never checked: first checks are due %s, %d at a time%s", count, when, pace,
             "" if daemon.monitor.status.ok else " once the checker is OK")


async def retention(daemon) -> None:
    d = daemon.settings.daemon
    deleted = await daemon.storage.attempt(store.apply_retention, daemon.storage.engine, datetime.now(UTC),
                                           keep_per_proxy=d.keep_checks_per_proxy, keep_success_days=d.keep_success_days,
                                           keep_failure_days=d.keep_failure_days)
    if deleted:
        log.info("retention removed %d old checks", deleted)
    # Worker reports are evidence like failed checks: kept as long, and never inside the guard rail's window.
    keep = max(d.keep_failure_days * 86400, daemon.settings.worker.report_window)
    pruned = await daemon.storage.attempt(prune_reports, daemon.storage.engine, datetime.now(UTC) - timedelta(seconds=keep))
    if pruned:
        log.info("retention removed %d old worker reports", pruned)


async def heartbeat(daemon) -> None:
    """The instance row, stale leases of silent peers (PostgreSQL), sd_notify's STATUS."""
    await daemon.publish()
    if daemon.postgresql:
        taken = await daemon.storage.attempt(store.reclaim_stale_leases, daemon.storage.engine)
        if taken:
            log.warning("took back %d leases of daemons stopped or silent for more than %d of their heartbeats; "
                        "their proxies are due again", taken, STALE_BEATS)
            daemon.dispatcher.wake.set()
