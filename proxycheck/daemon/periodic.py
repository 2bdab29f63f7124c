"""The periodic jobs (``jobs.py``) on APScheduler 3.x: when they run, and what a bug in one does.

Rules:
1. ``JOBS`` names the few fixed jobs and their ``[daemon]`` interval keys; the runner hands in
   each one's body, bound to the parts it uses (``Periodic(runs, on_bug)``). A few fixed jobs with fixed ids in a ``MemoryJobStore`` (nothing pickled, nothing shared
   between daemons: per-proxy schedules live in the database). Each runs every ``[daemon]``
   interval, up to 10 % of it later (jitter: daemons sharing a database drift apart), one run at
   a time (``max_instances=1``: a turn that comes while the job still runs is skipped, logged at
   debug level; a job waiting on the database has had its one line from ``storage.py``); runs
   that fell due together are coalesced into one. A run later than a whole interval (the event
   loop was stalled) is skipped with a warning: the next is near.
2. A job that raises is a bug (storage errors never leave a job: ``storage.attempt``). APScheduler
   would log it and go on, so the ``EVENT_JOB_ERROR`` listener hands it to the runner, which stops
   the daemon with exit code 1 and the traceback. APScheduler's own lines about a failed, missed
   or skipped run are dropped: the daemon reports each itself, once.
3. SIGHUP: a changed interval reschedules that job (its next run one new interval from now);
   nothing is restarted.
4. Stop: the scheduler is shut down first (no new runs), then jobs still running are cancelled and
   awaited. A job cancelled this way ends quietly (APScheduler would log the ``CancelledError`` as
   a failure).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC
from typing import NamedTuple

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ..config import Daemon as DaemonSettings

log = logging.getLogger("proxycheck.daemon")

JITTER = 0.1  # of the interval
EXECUTOR_LOGGER = "apscheduler.executors.default"


class Job(NamedTuple):
    name: str  # as the log says it
    interval_key: str  # the [daemon] key


JOBS = {
    "source_sync": Job("source sync", "sync_interval"),
    "retention": Job("retention", "retention_interval"),
    "own_ip_refresh": Job("own-IP refresh", "own_ip_interval"),
    "heartbeat": Job("heartbeat", "heartbeat_interval"),
    "notify": Job("notify observation", "heartbeat_interval"),  # daemon/notifying.py
}

Run = Callable[[], Awaitable[object]]  # one turn of a job, bound by the runner to what it uses


def _not_reported_by_the_daemon(record: logging.LogRecord) -> bool:
    """A filter for APScheduler's loggers: drops the executor's warnings and errors (a job that
    raised, a missed run, a run cancelled at shutdown) and the scheduler's "skipped: maximum number
    of running instances": ``_on_event`` reports them in the daemon's words."""
    if record.name == EXECUTOR_LOGGER:
        return record.levelno < logging.WARNING
    return not str(record.msg).startswith("Execution of job")


class Periodic:
    def __init__(self, runs: Mapping[str, Run], on_bug: Callable[[str, BaseException], None]) -> None:
        if set(runs) != set(JOBS):
            raise ValueError(f"periodic jobs are {sorted(JOBS)}, given {sorted(runs)}")
        self.runs = dict(runs)
        self.on_bug = on_bug
        self.scheduler = AsyncIOScheduler(timezone=UTC, jobstores={"default": MemoryJobStore()},
                                          job_defaults={"coalesce": True, "max_instances": 1})
        self.scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self._running: set[asyncio.Task] = set()
        self._stopped = False

    def start(self, d: DaemonSettings) -> None:
        """Add the jobs at ``d``'s intervals and start; inside the running loop (``AsyncIOScheduler`` needs it)."""
        for name in (EXECUTOR_LOGGER, "apscheduler.scheduler"):
            logging.getLogger(name).addFilter(_not_reported_by_the_daemon)
        for job_id, job in JOBS.items():
            interval = getattr(d, job.interval_key)
            self.scheduler.add_job(self._run, "interval", args=(job_id,), id=job_id, name=job.name,
                                   seconds=interval, jitter=interval * JITTER,
                                   misfire_grace_time=_grace(interval), replace_existing=True)
        self.scheduler.start()

    def reschedule(self, old: DaemonSettings, new: DaemonSettings) -> None:
        """SIGHUP: jobs whose interval changed run every new interval, the next one from now."""
        if not self.scheduler.running:
            return
        for job_id, job in JOBS.items():
            was, interval = getattr(old, job.interval_key), getattr(new, job.interval_key)
            if interval == was:
                continue
            self.scheduler.modify_job(job_id, misfire_grace_time=_grace(interval))
            self.scheduler.reschedule_job(job_id, trigger="interval", seconds=interval, jitter=interval * JITTER)
            log.info("%s now runs every %g s (was %g s)", job.name, interval, was)

    async def stop(self) -> None:
        """No new runs; cancel the runs in progress and wait for them to end."""
        self._stopped = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # the shutdown is a callback on the loop: let it run
        running = set(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _run(self, job_id: str) -> None:
        if self._stopped:  # submitted just before the shutdown took effect
            return
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await self.runs[job_id]()
        except asyncio.CancelledError:
            if not self._stopped:
                raise  # nobody else cancels a job: a bug, reported as one
        finally:
            self._running.discard(task)

    def _on_event(self, event: JobEvent) -> None:
        name = JOBS[event.job_id].name
        if event.code == EVENT_JOB_ERROR:
            self.on_bug(name, event.exception)
        elif event.code == EVENT_JOB_MISSED:
            log.warning("%s skipped its run due at %s: the daemon was stalled for longer than its interval",
                        name, f"{event.scheduled_run_time:%H:%M:%S} UTC")
        else:
            log.debug("%s is still running at its next turn: that turn is skipped", name)


def _grace(interval: float) -> int:
    """APScheduler wants whole seconds: a run may be up to one interval late."""
    return max(1, math.ceil(interval))
