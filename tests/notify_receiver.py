"""A webhook receiver for the notification tests: a real aiohttp server on 127.0.0.1, in a thread
of its own (a daemon under test is another process), that answers the statuses it is told to
and keeps every request it got."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def verifies(self, secret: bytes) -> bool:
        """The receiver's side of the signature, as docs/notify.md shows it."""
        expected = "sha256=" + hmac.new(secret, self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Proxycheck-Signature", ""))


class Receiver:
    def __init__(self) -> None:
        self.statuses: list[int] = []  # answered in turn, then 200
        self.got: list[Received] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/T0KEN-IN-PATH"

    def delivered(self) -> list[dict]:
        """The bodies answered 2xx, in order."""
        with self._lock:
            return [r.json for r in self.got if 200 <= r.status < 300]

    def wait_for(self, n: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.delivered()) >= n:
                return self.delivered()
            time.sleep(0.05)
        raise AssertionError(f"expected {n} messages, got {self.delivered()}")

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.got.append(Received(request.path, dict(request.headers), body, status))
        return web.Response(status=status, text="ok" if status < 300 else "no")
