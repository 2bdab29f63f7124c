"""Delivering messages: a webhook (signed JSON, aiohttp) and Apprise URLs, from a task of their own.

Rules:
1. Delivery never blocks the daemon: ``Sender.send`` puts the message in a bounded queue and
   returns; one task (``Sender.run``) delivers in order. A full queue (``QUEUE`` messages waiting:
   the receiver has been down a long time) drops the new message with a log line.
2. A failed delivery (no connection, a timeout, HTTP 5xx, 408 or 429, Apprise saying no) is
   retried ``[notify].retries`` times, ``retry_backoff`` seconds later and twice as long each
   time (at most ``MAX_BACKOFF``). Every failure is a log line; so is giving up. Any other 4xx is
   the receiver refusing the message itself: logged, not retried.
3. The webhook body is the JSON of ``message()`` (docs/notify.md), signed with HMAC-SHA256 of the
   exact bytes sent: ``X-Proxycheck-Signature: sha256=<hex>``. The secret is in no log line and
   no message; logs name a webhook by ``scheme://host:port`` (its path often holds a token) and an
   Apprise URL by its scheme.
4. Each destination is tried on its own: one that is down does not hold back the others' copy
   of a message beyond its own retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from .. import __version__
from .events import Event
from .settings import Notify, _origin, read_secret

log = logging.getLogger("proxycheck.notify")

QUEUE = 100
MAX_BACKOFF = 300.0
SIGNATURE_HEADER = "X-Proxycheck-Signature"
RETRY_STATUS = frozenset({408, 429})
VERSION = 1  # of the message's JSON


def message(event: Event, instance: Mapping[str, str], at: datetime | None = None) -> dict[str, Any]:
    """The JSON a webhook receives (docs/notify.md)."""
    return {"version": VERSION, "source": "proxycheck", "instance": dict(instance),
            "at": (at or datetime.now(UTC)).isoformat(timespec="seconds"), **event.body()}


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``; a receiver recomputes it and compares with
    ``hmac.compare_digest``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Failed(Exception):
    """A delivery that did not go through; ``retry`` if trying again may help."""

    def __init__(self, why: str, retry: bool = True) -> None:
        super().__init__(why)
        self.retry = retry


class Sender:
    def __init__(self, settings: Notify) -> None:
        self.settings = settings
        self.secret = read_secret(settings) if settings.webhook_url else b""
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        self.delivered = 0
        self.failed = 0  # messages a destination gave up on

    def send(self, msg: dict[str, Any]) -> bool:
        """Queue ``msg``; False (and a log line) when the queue is full (rule 1)."""
        try:
            self.queue.put_nowait(msg)
            return True
        except asyncio.QueueFull:
            log.error("notify: %d messages wait for delivery already; dropped: %s", QUEUE, msg["summary"])
            return False

    async def run(self) -> None:
        """The delivery task: for ever, one message at a time."""
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    msg = await self.queue.get()
                except asyncio.CancelledError:
                    if self.queue.qsize():
                        log.warning("notify: stopping with %d messages not delivered", self.queue.qsize())
                    raise
                body = json.dumps(msg, ensure_ascii=False).encode()
                tries = [self._attempts(f"webhook {_origin(self.settings.webhook_url)}",
                                        lambda: self._post(session, body), msg)] if self.settings.webhook_url else []
                tries += [self._attempts(f"apprise {url.partition('://')[0]}://", lambda url=url: self._apprise(url, msg),
                                         msg) for url in self.settings.apprise_urls]
                await asyncio.gather(*tries)
                self.queue.task_done()

    async def _attempts(self, dest: str, attempt, msg: dict[str, Any]) -> None:
        s = self.settings
        for n in range(1, s.retries + 2):
            try:
                await attempt()
                self.delivered += 1
                return
            except Failed as exc:
                why, retry = str(exc), exc.retry
            if not retry or n > s.retries:
                break
            wait = min(MAX_BACKOFF, s.retry_backoff * 2 ** (n - 1))
            log.warning("notify: %s failed (%s), attempt %d of %d; trying again in %g s", dest, why, n, s.retries + 1, wait)
            await asyncio.sleep(wait)
        self.failed += 1
        log.error("notify: %s failed (%s) after %d attempt%s; message not delivered: %s", dest, why, n,
                  "" if n == 1 else "s", msg["summary"])

    async def _post(self, session: aiohttp.ClientSession, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": f"proxycheck/{__version__}",
                   SIGNATURE_HEADER: sign(self.secret, body)}
        try:
            async with session.post(self.settings.webhook_url, data=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=self.settings.timeout)) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return
                retry = response.status >= 500 or response.status in RETRY_STATUS
                raise Failed(f"answered HTTP {response.status}", retry=retry)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Failed(_why(exc)) from None

    async def _apprise(self, url: str, msg: dict[str, Any]) -> None:
        import apprise  # the extra: settings.check made sure it is there

        def notify() -> bool:
            box = apprise.Apprise()
            box.add(url)
            title = f"proxycheck: {msg['event'].replace('_', ' ')}"
            return bool(box.notify(title=title, body=msg["summary"]))

        try:
            delivered = await asyncio.to_thread(notify)
        except Exception as exc:  # noqa: BLE001 - a third party's trouble is a failed delivery, not our bug
            raise Failed(f"Apprise raised {_why(exc)}") from None
        if not delivered:
            raise Failed("Apprise could not deliver (its log says why)")


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
