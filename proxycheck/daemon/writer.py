"""The one writer: completed checks go to the database in batches, and wait there if it is down.

Rules:
1. One task writes; it commits up to ``BATCH`` results per transaction (SQLite has one writer),
   each fenced by its lease token (``store.record_results``). While less than a batch is held, it
   writes at most once every ``GATHER`` seconds: a transaction's fixed cost (its statements per
   batch, the commit, the WAL check) is then shared by tens of results instead of a few
   (bench/README.md, "--live"); a result waits at most that long more before it is stored.
2. A storage error keeps the batch in hand and retries with a capped back-off, for as long as the
   daemon runs: a completed result is never dropped because the database went away. The outage
   is logged as every storage call's is (``storage.Outage``: once, every 30 s, and when it
   ends). Anything else is a bug and ends the task (and so the daemon, loudly).
3. Held results are bounded: while ``backlog`` reaches ``cap`` the dispatcher claims nothing
   (``backpressure``), so memory stays at most ``cap`` + ``[check].concurrency`` results
   (5.7 KB each for a check that ran 6 probes: ``bench/held_result_size.py``; about 6 MB at the
   default cap).
4. ``healthy=None`` results (checker unavailable, internal error) change no state: their proxies
   are only rescheduled. Released claims (checks cancelled at shutdown) only lose their lease.
5. On stop, what is held is written until a deadline; what cannot be written is logged with its
   count (its proxies are checked again once their leases are reclaimed).
6. Failing writes are told, not only logged: ``write_problem()`` is what ``/healthz`` (503) and
   systemd's STATUS ("storage FAILING") say while a batch cannot be written (a full disk, a
   locked or lost database; ``Publisher.storage_problem`` adds the other failing calls). The watchdog
   stays fed while the writer retries: its action is a kill,
   which frees no disk and would drop every result held here (rule 2).
7. On SQLite the WAL is checkpointed and truncated (``store.engine.checkpoint``) after a written
   batch that left it over ``CHECKPOINT_ABOVE`` bytes, and after every failed one (a truncated
   WAL gives its space back): the WAL never grows to fill a small disk.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .. import health, store
from ..config import Settings
from ..metrics import DaemonMetrics
from ..result import CheckResult
from ..store.engine import CHECKPOINT_ABOVE, checkpoint
from ..store.exits import FollowUp
from ..store.leases import Claim
from .storage import Storage, is_storage_error

log = logging.getLogger("proxycheck.daemon")

BATCH = 500
GATHER = 0.2  # seconds (rule 1)
MAX_BACKOFF = 5.0


@dataclass
class Done:
    claim: Claim
    result: CheckResult | None  # None: released (cancelled at shutdown), not checked


class Writer:
    def __init__(self, storage: Storage, settings: Callable[[], Settings], instance_id: str,
                 metrics: DaemonMetrics) -> None:
        self.storage = storage
        self.settings = settings
        self.instance_id = instance_id
        self.metrics = metrics
        self.rng = random.Random()
        self.held: deque[Done] = deque()
        self.checks_done = 0
        self.last_written = time.monotonic()
        self.last_round_at: datetime | None = None
        self._wake = asyncio.Event()
        self._last_write = 0.0  # when the latest write began (rule 1)

    @property
    def cap(self) -> int:
        return max(1000, 10 * self.settings().check.concurrency)

    @property
    def backpressure(self) -> bool:
        return len(self.held) >= self.cap

    def write_problem(self) -> str | None:
        """None while writes work; else one sentence for /healthz and STATUS (rule 6). No path,
        no URL: the log line has the database's own words."""
        since = self.storage.outage.failing_since(write_results.__name__)
        if since is None:
            return None
        return (f"completed results cannot be written for {self.storage.outage.clock() - since:.0f} s "
                f"({len(self.held)} held, written when the database takes them)")

    def put(self, done: Done) -> None:
        self.held.append(done)
        self._wake.set()

    async def run(self) -> None:
        """Side task: write whatever is held, retrying storage errors forever."""
        backoff = 1.0
        while True:
            if not self.held:
                self._wake.clear()
                await self._wake.wait()
                continue
            gather = self._last_write + GATHER - time.monotonic()
            if gather > 0 and len(self.held) < BATCH:
                await asyncio.sleep(gather)
            self._last_write = time.monotonic()
            if await self._write_some():
                backoff = 1.0
            else:
                await asyncio.sleep(backoff * (0.5 + self.rng.random()))
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def flush(self, timeout: float) -> None:
        """Stop: write what is held for at most ``timeout`` seconds, then say what was lost."""
        deadline = time.monotonic() + timeout
        while self.held and time.monotonic() < deadline:
            remaining = deadline - time.monotonic()
            try:
                ok = await asyncio.wait_for(self._write_some(), timeout=remaining)
            except TimeoutError:
                break
            if not ok:
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if self.held:
            checked = sum(1 for d in self.held if d.result is not None)
            log.error("the database is unreachable: %d completed checks were not written and %d leases not released; "
                      "those proxies are checked again once their leases are taken back", checked, len(self.held) - checked)

    async def _write_some(self) -> bool:
        """Write one batch from the head of ``held``; False (batch kept) on a storage error."""
        batch = [self.held[i] for i in range(min(BATCH, len(self.held)))]
        settings = self.settings()
        now = datetime.now(UTC)
        judged, unjudged, released = [], [], []
        for done in batch:
            if done.result is None:
                released.append(done.claim)
            elif done.result.healthy is None:
                unjudged.append(done.claim)
            else:
                transition = health.advance(done.claim.state, healthy=bool(done.result.healthy), code=done.result.code,
                                            reason=done.result.reason, now=now, policy=settings.health, rng=self.rng)
                judged.append((done.claim, done.result, transition))
        try:
            follow_up = FollowUp(settings.probes.sticky_seconds, settings.probes.sticky_refresh)
            await self.storage.call(write_results, self.storage.engine, judged, unjudged, released, self.instance_id,
                                    health.retry_after_unavailable(now, settings.health), now, follow_up)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            await self._checkpoint(force=True)
            self.storage.outage.failed(write_results.__name__, exc,
                                       note=f"{len(self.held)} results held, retried until the database is back")
            return False
        self.storage.outage.worked(write_results.__name__, note=f"wrote {len(batch)} held results")
        for _ in batch:
            self.held.popleft()
        self.checks_done += len(judged)
        if judged:
            self.last_round_at = now
        for done in batch:
            if done.result is not None:
                self.metrics.observe(done.result)
        self.last_written = time.monotonic()
        await self._checkpoint()
        return True

    async def _checkpoint(self, force: bool = False) -> None:
        """Rule 7. A failing checkpoint is logged by ``attempt`` and tried again next time."""
        await self.storage.attempt(checkpoint, self.storage.engine, above=0 if force else CHECKPOINT_ABOVE)


def write_results(engine, judged, unjudged, released, instance_id, retry_at, now, follow_up=None) -> None:
    """One storage call per batch (each store function is its own short transaction). A usable
    proxy whose exit IP needs another reading soon is due again then (sticky.py rule 6)."""
    if judged:
        store.record_results(engine, judged, instance_id, last_round_at=now, follow_up=follow_up)
    if unjudged:
        store.reschedule_unavailable(engine, unjudged, retry_at)
    if released:
        store.release_claims(engine, released)
