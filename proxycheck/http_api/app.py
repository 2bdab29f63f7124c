"""The routes ``proxycheck run`` serves to workers, and their lifecycle (aiohttp).

Rules:
1. It answers with the same values the Python API returns: ``/proxies/healthy`` (``?limit=N``:
   the first N) and ``/proxy`` go through ``proxycheck.worker``, ``/report`` through
   ``proxycheck.feedback``, ``/lease`` and ``/lease/{id}/release`` through
   ``proxycheck.worker.leasing`` (JSON bodies), ``/status`` is exactly ``proxycheck status --json`` (``?limit=N&after=KEY`` gives one page of it, with
   ``next_after`` for the next one).
2. Locked (guard.py): the right ``Host:``, a bearer token on every route but ``/healthz`` (wrong
   ones throttled per address), JSON bodies, ``Cache-Control: no-store``; every query and path
   parameter is parsed by params.py (400, never 500). The token is resolved in ``start()`` (http_token.py: ``$PROXYCHECK_TOKEN``,
   ``[http].token``, else a generated ``<state_dir>/http-token``); its path is logged, never its value.
   The status page under ``/ui`` (page/) is opened with the same token, once, by a login form.
3. No database call runs in the event loop; fleet-sized reads are bounded (reads.py), and
   ``/status`` is rendered in a helper process (status_proc.py).
4. ``/healthz`` is open and holds no proxy data: the database (one cheap query, in a thread,
   with a ``HEALTH_TIMEOUT``, and whether the daemon's own calls work: ``storage_problem()``,
   daemon/writer.py rule 6) and the checker (``checker_state()``); 200 when
   both are fine, else 503 with the reason. A database that answers reads but takes no writes
   (a full disk) is unavailable. ``guards``: each captcha service's error budget (tripped,
   errors, budget, resumes_at: no proxy names); a tripped guard is the guard working, not a
   failing daemon, so it alone never makes /healthz fail.
5. Proxy passwords appear only where a worker asked for proxies to use (``/proxy``,
   ``/proxies/healthy``, ``/lease``), never in ``/status``, ``/metrics``, ``/healthz`` or logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from multidict import MultiDict
from sqlalchemy import text

from ..config import Settings
from ..errors import GuardTripped, NoHealthyProxy, StorageError
from ..http_token import ensure_token
from ..metrics import DaemonMetrics
from .guard import (Handler, HostRule, Throttle, auth_middleware, bad_input, error, host_middleware, json_bodies_only,
                    no_store, server_log)
from .page import Page
from .params import number
from .reads import Busy, Reads, Shared
from .status_proc import StatusRenderer

log = logging.getLogger("proxycheck.http")

HEALTH_TIMEOUT = 2.0  # seconds the /healthz database query may take
MAX_PAGE = 5000  # largest ?limit= of a /status page
SLICE = 256 * 1024  # bytes written at a time of a large body (_send)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


def _guard_tripped(exc: GuardTripped) -> web.Response:
    """429 with ``Retry-After``: the service's error budget is spent until ``resumes_at`` (guard.py)."""
    response = _json({"error": "guard_tripped", "detail": str(exc), **exc.details}, 429)
    if exc.resumes_at is not None:
        wait = (exc.resumes_at - datetime.now(timezone.utc)).total_seconds()  # type: ignore[operator]
        response.headers["Retry-After"] = str(max(1, int(wait) + 1))
    return response


def _not_handed_out(exc: GuardTripped | NoHealthyProxy | ValueError) -> web.Response:
    """Why ``GET /proxy`` or ``POST /lease`` handed nothing out: the service's budget is spent (429),
    no proxy fits (404), or the request was bad (400)."""
    if isinstance(exc, GuardTripped):
        return _guard_tripped(exc)
    if isinstance(exc, NoHealthyProxy):
        return _json({"error": "no_healthy_proxy", "detail": str(exc), **getattr(exc, "details", {})}, 404)
    return error(400, "bad_request", str(exc))


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, default=str).encode()


async def _send(request: web.Request, body: bytes, headers: dict[str, str] | None = None) -> web.StreamResponse:
    """A large JSON body in slices, waiting for each to drain: every client of a shared /status
    holds the one ``body`` plus at most a slice in its socket buffer, not a copy of the rest."""
    if len(body) <= SLICE:
        return web.Response(body=body, content_type="application/json", headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.content_length = len(body)
    await response.prepare(request)
    view = memoryview(body)
    for start in range(0, len(body), SLICE):
        await response.write(view[start:start + SLICE])
    await response.write_eof()
    return response


@web.middleware
async def _our_trouble(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The database being down or the endpoint busy is our trouble, not the client's: 503, so it retries."""
    try:
        return await handler(request)
    except StorageError as exc:
        log.warning("HTTP %s %s: %s", request.method, request.path, exc)
        return error(503, "storage_unavailable", str(exc))
    except Busy as exc:
        return error(503, "busy", f"{exc}; retry in a second", headers={"Retry-After": "1"})


class HttpApi:
    """Routes bound to one daemon's engine, metrics and checker state."""

    def __init__(self, settings: Settings, engine, pool, metrics: DaemonMetrics,
                 checker_state: Callable[[], tuple[str, str]], *, heavy_slots: int = 2, heavy_wait: float = 2.0,
                 storage_problem: Callable[[], str | None] = lambda: None) -> None:
        self.settings = settings
        self.storage_problem = storage_problem
        self.engine = engine
        self.pool = pool  # a proxycheck.worker.ProxyPool on the daemon's own database
        self.metrics = metrics
        self.checker_state = checker_state
        self.reads = Reads(slots=heavy_slots, wait=heavy_wait)
        self._full_status = Shared(self._build_status)
        self._status = StatusRenderer(engine.url.render_as_string(hide_password=False), settings.worker, self.reads.light,
                                      settings.guard)
        self._db_probe: asyncio.Future | None = None
        self._db_ok = True
        self._token = ""
        self._host_rule = HostRule.build("127.0.0.1", 0)
        self._runner: web.AppRunner | None = None
        self.throttle = Throttle()
        self.page = Page(settings, engine, self.reads, lambda: self._token, checker_state, self.throttle)

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[host_middleware(lambda: self._host_rule), self.page.middleware(),
                         auth_middleware(lambda: self._token, self.throttle), json_bodies_only, bad_input, _our_trouble],
            client_max_size=64 * 1024)
        app.on_response_prepare.append(no_store)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/status", self.status)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/proxies/healthy", self.healthy)
        app.router.add_get("/proxy", self.one_proxy)
        app.router.add_post("/report", self.report)
        app.router.add_post("/lease", self.lease)
        app.router.add_post("/lease/{id}/release", self.release)
        self.page.add_routes(app)
        return app

    async def start(self) -> str:
        token = await asyncio.to_thread(ensure_token, self.settings)
        self._token = token.value
        if token.created:
            log.info("HTTP token generated in %s (mode 0640: its group may read it); workers read it with `proxycheck token`", token.source)
        else:
            log.info("HTTP token from %s", token.source)
        host, _, port = self.settings.http.listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        self._runner = web.AppRunner(self.app(), access_log=None, logger=server_log())
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, int(port))
        await site.start()
        bound = self._runner.addresses[0]
        self._host_rule = HostRule.build(host, bound[1], self.settings.http.allowed_hosts)
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        return f"http://{shown}:{bound[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.reads.close()
        await self._status.close()

    # -- /healthz --------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        state, reason = self.checker_state()
        db_reason = await self._database_problem() or self.storage_problem()
        problems = [p for p in (db_reason, None if state == "ok" else f"checker {state}: {reason}") if p]
        body = {"daemon": "running", "checker": state, "checker_reason": reason or None,
                "database": "unavailable" if db_reason else "ok", "database_reason": db_reason,
                "reason": "; ".join(problems) or None, "guards": None if db_reason else await self._guards()}
        return _json(body, 503 if problems else 200)

    async def _guards(self) -> dict[str, Any] | None:
        """Rule 4's ``guards``: None when the database cannot say in time."""
        from ..store.guard import guard_states

        try:
            states = await asyncio.wait_for(self.reads.light(guard_states, self.engine, self.settings), HEALTH_TIMEOUT)
        except Exception:  # noqa: BLE001 - /healthz answers about the database above; this is detail
            return None
        return {s: {"tripped": g.tripped, "errors": g.errors, "budget": g.budget, "window": g.window,
                    "resumes_at": g.resumes_at.isoformat() if g.resumes_at else None} for s, g in states.items()}

    async def _database_problem(self) -> str | None:
        """None when one cheap query answered in time. At most one query is in flight: a hung
        database costs one thread, however often /healthz is asked."""
        if self._db_probe is None or self._db_probe.done():
            self._db_probe = asyncio.ensure_future(self.reads.light(self._ping))
            self._db_probe.add_done_callback(lambda f: f.cancelled() or f.exception())
        problem = detail = None
        try:
            await asyncio.wait_for(asyncio.shield(self._db_probe), HEALTH_TIMEOUT)
        except TimeoutError:
            problem = detail = f"the database did not answer within {HEALTH_TIMEOUT:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure of the query is a failing database here
            # The open endpoint says only that it failed; the log (masked URL) says why.
            problem, detail = f"the database query failed ({type(exc).__name__}; the daemon's log says why)", str(exc)
        if (problem is None) != self._db_ok:  # logged when it changes, not on every probe
            self._db_ok = problem is None
            if detail:
                log.warning("/healthz: database unavailable: %s", detail)
            else:
                log.info("/healthz: the database answers again")
        return problem

    def _ping(self) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # The thread must come back too (a hung query would hold it, and the daemon's exit):
                # the server cancels one second after /healthz has already answered 503.
                conn.execute(text(f"SET LOCAL statement_timeout = {int(1000 * (HEALTH_TIMEOUT + 1))}"))
            conn.execute(text("SELECT version_num FROM alembic_version")).all()

    # -- /status ---------------------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        if not request.query:
            body = await self._full_status.get()
            return await _send(request, body, {"Age": str(int(self._full_status.age()))})
        unknown = sorted(set(request.query) - {"limit", "after", "country", "asn"})
        if unknown:
            return error(400, "bad_request", f"unknown parameter {unknown[0]!r} (known: limit, after, country, asn)")
        try:
            limit = _limit(request.query.get("limit", str(MAX_PAGE)))
            where = _where(request.query)
        except ValueError as exc:
            return error(400, "bad_request", str(exc))
        after = request.query.get("after") or None
        body = await self.reads.heavy_async(self._status.render(limit=limit, after=after, **where))
        return await _send(request, body)

    async def _build_status(self) -> bytes:
        return await self.reads.heavy_async(self._status.render())

    # -- /metrics and the worker routes ----------------------------------------------------------
    async def metrics_page(self, request: web.Request) -> web.Response:
        body = await self.reads.heavy(self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def healthy(self, request: web.Request) -> web.Response:
        from ..worker import filters_from_query

        try:
            fmt = _format(request)
            filters = filters_from_query(MultiDict((k, v) for k, v in request.query.items() if k != "limit"))
            if "limit" in request.query:
                filters["limit"] = _limit(request.query["limit"])
        except ValueError as exc:
            return error(400, "bad_request", str(exc))
        try:
            body = await self.reads.heavy(self._render_healthy, fmt, filters)
        except GuardTripped as exc:
            return _guard_tripped(exc)
        return web.Response(body=body, content_type="application/json")

    def _render_healthy(self, fmt: str, filters: dict[str, Any]) -> bytes:
        shaped, unusable = [], []
        for proxy in self.pool.get_all(**filters):
            try:
                shaped.append(_proxy_json(proxy, fmt))
            except ValueError as exc:  # e.g. a host name no check has resolved: anti-captcha wants an IP
                unusable.append({"proxy": proxy.masked_url, "detail": str(exc)})
        if unusable:
            log.warning("HTTP /proxies/healthy?format=%s left out %d proxies: %s", fmt, len(unusable), unusable[0]["detail"])
        return _json_bytes(shaped)

    async def one_proxy(self, request: web.Request) -> web.Response:
        from ..worker import filters_from_query

        try:
            fmt = _format(request)
            filters = filters_from_query(request.query)
            proxy = await self.reads.light(self.pool.get, **filters)
        except (GuardTripped, NoHealthyProxy, ValueError) as exc:
            return _not_handed_out(exc)
        try:
            return _json(_proxy_json(proxy, fmt))
        except ValueError as exc:
            return _json({"error": "unusable_proxy", "proxy": proxy.masked_url, "detail": str(exc)}, 422)

    async def report(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            proxy, outcome = body["proxy"], body["outcome"]
        except (ValueError, KeyError, TypeError) as exc:
            return error(400, "bad_request", f"expected JSON {{\"proxy\": URL, \"outcome\": ...}}: {exc}")
        try:
            result = await self.reads.light(self.pool.report, proxy, outcome, worker=body.get("worker") or request.remote,
                                            service=body.get("service"))
        except ValueError as exc:
            return error(400, "bad_request", str(exc))
        return _json(result.as_dict())

    async def lease(self, request: web.Request) -> web.Response:
        """``POST /lease`` ``{"ttl": 180, "tags": ["us"], ..., "worker": NAME, "format": ...}``:
        a check-out lease (worker/leasing.py); every filter of ``GET /proxy`` is a JSON key."""
        from ..worker.params import filters_from_json

        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError(f"expected a JSON object, got {type(body).__name__}")
            ttl, worker = body.pop("ttl", None), body.pop("worker", None) or request.remote
            fmt = _shape(body.pop("format", ""), body.pop("local_test", ""))
            filters = filters_from_json(body)
            held = await self.reads.light(self.pool.acquire, ttl=ttl, worker=worker, **filters)
        except (GuardTripped, NoHealthyProxy, ValueError) as exc:
            return _not_handed_out(exc)
        try:
            shaped = _proxy_json(held.proxy, fmt)
        except ValueError as exc:
            await self.reads.light(self.pool.release, held)
            return _json({"error": "unusable_proxy", "proxy": held.proxy.masked_url, "detail": str(exc)}, 422)
        return _json({"lease": held.id, "expires_at": held.expires_at.isoformat(), "proxy": shaped})

    async def release(self, request: web.Request) -> web.Response:
        """``POST /lease/{id}/release``, optionally ``{"outcome": <the service's answer>}``, which
        is reported by the release that ends the lease, once. ``released`` is false when the lease
        was unknown, had expired or was released; ``reported`` says whether a report was stored."""
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError(f"expected a JSON object, got {type(body).__name__}")
            outcome, worker = body.get("outcome"), body.get("worker") or request.remote
            released = await self.reads.light(self.pool.release, request.match_info["id"], outcome, worker=worker,
                                              service=body.get("service"))
        except ValueError as exc:
            return error(400, "bad_request", str(exc))
        return _json({"lease": request.match_info["id"], "released": released.released, "reported": released.reported})


FORMATS = ("", "anticaptcha", "2captcha")


def _limit(text: str) -> int:
    return number(text, "limit", 1, MAX_PAGE)


def _where(query: Any) -> dict[str, Any]:
    """``country`` and ``asn`` of ``/status``, checked as the worker routes check them (Filters)."""
    from ..worker.params import make_filters

    given = {k: query[k] for k in ("country", "asn") if query.get(k)}
    if not given:
        return {}
    filters = make_filters(**given)
    return {"country": filters.country, "asn": filters.asn}


def _format(request: web.Request) -> str:
    return _shape(request.query.get("format", ""), request.query.get("local_test", ""))


def _shape(fmt: Any, local_test: Any) -> str:
    """``format`` (and ``local_test``: the converters' opt-in for local proxies, proxy.py rule 6)
    as one value: ``"anticaptcha"``, ``"anticaptcha+local"``, ``"2captcha"``, ... or ``""``."""
    from ..worker.params import flag

    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of anticaptcha, 2captcha (or leave it out for proxycheck's own shape)")
    if isinstance(local_test, bool):
        local_test = "true" if local_test else "false"
    if local_test and flag("local_test", str(local_test)):
        return fmt + "+local" if fmt else fmt
    return fmt


def _proxy_json(proxy, fmt: str) -> dict[str, Any]:
    fmt, _, local = fmt.partition("+")
    if fmt == "anticaptcha":
        return proxy.as_anticaptcha(local_test=bool(local))
    if fmt == "2captcha":
        return proxy.as_2captcha(local_test=bool(local))
    return {"url": proxy.url, "proxy": proxy.masked_url, "scheme": proxy.scheme, "host": proxy.host, "port": proxy.port,
            "username": proxy.username, "password": proxy.password, "tags": sorted(proxy.tags),
            "exit_ip": getattr(proxy, "exit_ip", None), "latency_ms": getattr(proxy, "latency_ms", None)}
