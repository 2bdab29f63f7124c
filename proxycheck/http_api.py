"""The HTTP endpoint ``proxycheck run`` serves for workers not written in Python (aiohttp).

Rules:
1. It binds ``[http].listen`` (127.0.0.1:8181 by default) and, when ``[http].token`` is set,
   every route but ``/healthz`` needs ``Authorization: Bearer <token>`` (compared in constant
   time). It runs inside the daemon's event loop; database calls go to a thread.
2. It answers with the same values the Python API returns: ``/proxies/healthy`` and ``/proxy``
   go through ``proxycheck.worker``, ``/report`` through ``proxycheck.feedback``, ``/lease``
   and ``/lease/{id}/release`` through ``proxycheck.worker.leasing`` (JSON bodies), ``/status``
   is exactly ``proxycheck status --json``.
3. Proxy passwords appear only where a worker asked for proxies to use (``/proxy``,
   ``/proxies/healthy``, ``/lease``), never in ``/status``, ``/metrics`` or logs.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .config import Settings
from .errors import NoHealthyProxy, StorageError
from .metrics import DaemonMetrics
from .status_view import as_json as status_json
from .store import list_proxies, status_summary
from .store._rows import utcnow
from .store.worker_leases import lease_summary

log = logging.getLogger("proxycheck.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


@web.middleware
async def _storage_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The database being down or locked is our trouble, not the client's: 503, so it retries."""
    try:
        return await handler(request)
    except StorageError as exc:
        log.warning("HTTP %s %s: %s", request.method, request.path, exc)
        return _json({"error": "storage_unavailable", "detail": str(exc)}, 503)


def _auth_middleware(token: str):
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path != "/healthz":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _json({"error": "unauthorized", "detail": "send Authorization: Bearer <[http].token>"}, 401)
        return await handler(request)

    return check


class HttpApi:
    """Routes bound to one daemon's engine, metrics and checker state."""

    def __init__(self, settings: Settings, engine, pool, metrics: DaemonMetrics,
                 checker_state: Callable[[], tuple[str, str]]) -> None:
        self.settings = settings
        self.engine = engine
        self.pool = pool  # a proxycheck.worker.ProxyPool on the daemon's own database
        self.metrics = metrics
        self.checker_state = checker_state
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_auth_middleware(self.settings.http.token), _storage_errors], client_max_size=64 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/status", self.status)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/proxies/healthy", self.healthy)
        app.router.add_get("/proxy", self.one_proxy)
        app.router.add_post("/report", self.report)
        app.router.add_post("/lease", self.lease)
        app.router.add_post("/lease/{id}/release", self.release)
        return app

    async def start(self) -> str:
        host, _, port = self.settings.http.listen.rpartition(":")
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]") or "127.0.0.1", int(port))
        await site.start()
        bound = self._runner.addresses[0]
        return f"http://{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- routes ---------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        state, reason = self.checker_state()
        body = {"daemon": "running", "checker": state, "reason": reason or None}
        return _json(body, 200 if state == "ok" else 503)

    async def status(self, request: web.Request) -> web.Response:
        def read():
            leases = lease_summary(self.engine, now=utcnow())
            return status_summary(self.engine), list_proxies(self.engine), self.pool.feedback_summary(), leases

        summary, rows, feedback, leases = await asyncio.to_thread(read)
        return _json(status_json(summary, rows, feedback, leases))

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def healthy(self, request: web.Request) -> web.Response:
        from .worker import filters_from_query

        try:
            fmt = _format(request)
            filters = filters_from_query(request.query)
        except ValueError as exc:
            return _json({"error": "bad_request", "detail": str(exc)}, 400)
        proxies = await asyncio.to_thread(self.pool.get_all, **filters)
        shaped, unusable = [], []
        for proxy in proxies:
            try:
                shaped.append(_proxy_json(proxy, fmt))
            except ValueError as exc:  # e.g. a host name no check has resolved: anti-captcha wants an IP
                unusable.append({"proxy": proxy.masked_url, "detail": str(exc)})
        if unusable:
            log.warning("HTTP /proxies/healthy?format=%s left out %d proxies: %s", fmt, len(unusable), unusable[0]["detail"])
        return _json(shaped)

    async def one_proxy(self, request: web.Request) -> web.Response:
        from .worker import filters_from_query

        try:
            fmt = _format(request)
            filters = filters_from_query(request.query)
            proxy = await asyncio.to_thread(self.pool.get, **filters)
        except NoHealthyProxy as exc:
            return _json({"error": "no_healthy_proxy", "detail": str(exc), **getattr(exc, "details", {})}, 404)
        except ValueError as exc:
            return _json({"error": "bad_request", "detail": str(exc)}, 400)
        try:
            return _json(_proxy_json(proxy, fmt))
        except ValueError as exc:
            return _json({"error": "unusable_proxy", "proxy": proxy.masked_url, "detail": str(exc)}, 422)

    async def report(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            proxy, outcome = body["proxy"], body["outcome"]
        except (ValueError, KeyError, TypeError) as exc:
            return _json({"error": "bad_request", "detail": f"expected JSON {{\"proxy\": URL, \"outcome\": ...}}: {exc}"}, 400)
        try:
            result = await asyncio.to_thread(self.pool.report, proxy, outcome, worker=body.get("worker") or request.remote)
        except ValueError as exc:
            return _json({"error": "bad_request", "detail": str(exc)}, 400)
        return _json(result.as_dict())

    async def lease(self, request: web.Request) -> web.Response:
        """``POST /lease`` ``{"ttl": 180, "tags": ["us"], ..., "worker": NAME, "format": ...}``:
        a check-out lease (worker/leasing.py); every filter of ``GET /proxy`` is a JSON key."""
        from .worker.params import filters_from_json

        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError(f"expected a JSON object, got {type(body).__name__}")
            ttl, worker, fmt = body.pop("ttl", None), body.pop("worker", None) or request.remote, body.pop("format", "")
            if fmt not in FORMATS:
                raise ValueError(f"format: {fmt!r} is not one of anticaptcha, 2captcha (or leave it out)")
            filters = filters_from_json(body)
            held = await asyncio.to_thread(self.pool.acquire, ttl=ttl, worker=worker, **filters)
        except NoHealthyProxy as exc:
            return _json({"error": "no_healthy_proxy", "detail": str(exc), **getattr(exc, "details", {})}, 404)
        except ValueError as exc:
            return _json({"error": "bad_request", "detail": str(exc)}, 400)
        try:
            shaped = _proxy_json(held.proxy, fmt)
        except ValueError as exc:
            await asyncio.to_thread(self.pool.release, held)
            return _json({"error": "unusable_proxy", "proxy": held.proxy.masked_url, "detail": str(exc)}, 422)
        return _json({"lease": held.id, "expires_at": held.expires_at.isoformat(), "proxy": shaped})

    async def release(self, request: web.Request) -> web.Response:
        """``POST /lease/{id}/release``, optionally ``{"outcome": <the service's answer>}``, which
        is reported first. ``released`` is false when the lease had expired or was released."""
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError(f"expected a JSON object, got {type(body).__name__}")
            outcome, worker = body.get("outcome"), body.get("worker") or request.remote
            released = await asyncio.to_thread(self.pool.release, request.match_info["id"], outcome, worker=worker)
        except ValueError as exc:
            return _json({"error": "bad_request", "detail": str(exc)}, 400)
        return _json({"lease": request.match_info["id"], "released": released, "reported": outcome is not None})


FORMATS = ("", "anticaptcha", "2captcha")


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "")
    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of anticaptcha, 2captcha (or leave it out for proxycheck's own shape)")
    return fmt


def _proxy_json(proxy, fmt: str) -> dict[str, Any]:
    if fmt == "anticaptcha":
        return proxy.as_anticaptcha()
    if fmt == "2captcha":
        return proxy.as_2captcha()
    return {"url": proxy.url, "proxy": proxy.masked_url, "scheme": proxy.scheme, "host": proxy.host, "port": proxy.port,
            "username": proxy.username, "password": proxy.password, "tags": sorted(proxy.tags),
            "exit_ip": getattr(proxy, "exit_ip", None), "latency_ms": getattr(proxy, "latency_ms", None)}
