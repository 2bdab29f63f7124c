"""The status page's routes: plain server-rendered HTML (jinja2, autoescaped) under ``/ui``.

    GET  /ui/                      the fleet now, and the fleet over time (charts.js draws them)
    GET  /ui/data/over-time/{w}    the over-time chart data, w = 24h | 7d (JSON, session only)
    GET  /ui/proxies               the proxy table (?state= &code= &tag= &scheme= &target= &anonymity= &sort= &desc=1 &page=)
    GET  /ui/proxies/{id}          one proxy: its checks, exits, bans, worker leases and reports, explain text
    GET/POST /ui/login, POST /ui/logout; /ui/static/ the vendored uPlot (MIT, its LICENSE beside it), CSS, JS

Rules: who may see it is session.py; every database read runs on the endpoint's threads
(reads.py), the fleet-sized ones holding a heavy-read permit; the over-time data is shared
between browsers, reused for at least ``OVER_TIME_AGE`` seconds (and 4 times as long as it took
to build: at 100,000 proxies with a week of history that is seconds, bench/page_bench.py), and
its build starts at login, so the charts are usually ready when the fleet page asks for them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from ...config import Settings
from ...explain import EXPLANATIONS
from ...explain import render as explain_text
from ...status_view import age, checker_state
from ...store import status_summary
from ...store.history import proxy_history
from ...store.guard import guard_states, held_subnets
from ...store.reports import WHY_NOT, feedback_summary, guard_rail, recent_reports
from ...store.worker_leases import lease_counts
from ...verdict import error_name
from ..guard import Throttle, refused, too_many
from ..params import BadParameter, number
from ..reads import Reads, Shared
from . import queries
from .session import COOKIE, PREFIX, Sessions, redirect, session_middleware, set_cookie, token_matches

OVER_TIME_AGE = 30.0  # seconds the over-time chart data is reused
STATIC = Path(str(resources.files(__package__) / "static"))


class Page:
    """The page bound to one daemon's reader engine, endpoint threads and token."""

    def __init__(self, settings: Settings, engine, reads: Reads, token: Callable[[], str],
                 checker_state: Callable[[], tuple[str, str]], throttle: Throttle | None = None) -> None:
        self.settings, self.engine, self.reads, self.token = settings, engine, reads, token
        self.throttle = throttle or Throttle()  # the endpoint's, shared with the bearer check (guard.py rule 5)
        self.checker_state = checker_state
        self.sessions = Sessions()
        self.env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        self.env.filters["iso"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "never"
        self.env.filters["ago"] = lambda dt: age(dt, datetime.now(UTC)) if dt else ""
        self.env.globals.update(error_name=error_name, prefix=PREFIX, why_not=WHY_NOT)
        # Not a heavy-read permit: Shared already runs one build per window at a time, and a
        # build of seconds must not hold a permit the fleet page needs (it would answer 503).
        self._over_time = {w: Shared(lambda w=w: self.reads.light(queries.over_time, self.engine, w),
                                     min_age=OVER_TIME_AGE) for w in queries.WINDOWS}

    def middleware(self):
        return session_middleware(self.sessions)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.to_page)
        app.router.add_get(PREFIX, self.to_page)
        app.router.add_get(f"{PREFIX}/login", self.login_form)
        app.router.add_post(f"{PREFIX}/login", self.login)
        app.router.add_post(f"{PREFIX}/logout", self.logout)
        app.router.add_get(f"{PREFIX}/", self.fleet)
        app.router.add_get(f"{PREFIX}/data/over-time/{{window}}", self.over_time)
        app.router.add_get(f"{PREFIX}/proxies", self.table)
        app.router.add_get(f"{PREFIX}/proxies/{{id:\\d+}}", self.proxy)
        app.router.add_static(f"{PREFIX}/static/", STATIC)

    def _html(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        session = request.get("session")
        body = self.env.get_template(template).render(csrf=session.csrf if session else None, **values)
        return web.Response(text=body, status=status, content_type="text/html")

    # -- login -----------------------------------------------------------------------------------
    async def to_page(self, request: web.Request) -> web.Response:
        return redirect(f"{PREFIX}/")

    async def login_form(self, request: web.Request) -> web.Response:
        return self._html(request, "login.html", failed=False)

    async def login(self, request: web.Request) -> web.Response:
        wait = self.throttle.retry_after(request.remote or "unknown address")
        if wait:
            return too_many(wait, page=True)
        form = await request.post()
        given = form.get("token")
        if not isinstance(given, str) or not token_matches(given.strip(), self.token()):
            if isinstance(given, str) and given.strip():  # an empty form guesses nothing (guard.py rule 5)
                refused(request, self.throttle, "wrong token in the page's login form")
            return self._html(request, "login.html", status=401, failed=True)
        session = self.sessions.open()
        for shared in self._over_time.values():  # warm: the charts ask right after the first paint
            asyncio.ensure_future(shared.get()).add_done_callback(lambda f: f.cancelled() or f.exception())
        response = redirect(f"{PREFIX}/")
        set_cookie(response, request, session, self.sessions.ttl)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        form = await request.post()
        session = request["session"]
        if not token_matches(str(form.get("csrf", "")), session.csrf):
            return web.Response(status=403, text="missing or wrong CSRF token")
        self.sessions.close(session.id)
        response = redirect(f"{PREFIX}/login")
        response.del_cookie(COOKIE, path=PREFIX)
        return response

    # -- the fleet -------------------------------------------------------------------------------
    async def fleet(self, request: web.Request) -> web.Response:
        values = await self.reads.heavy(self._fleet_now)
        return self._html(request, "fleet.html", **values)

    def _fleet_now(self) -> dict[str, Any]:
        summary = status_summary(self.engine)
        state, reason = self.checker_state()
        return {"summary": summary, "checker": checker_state(summary), "own_checker": (state, reason),
                "feedback": feedback_summary(self.engine, guard_rail(self.settings.worker)),
                "reports": recent_reports(self.engine, limit=15), "retention": self.settings.daemon,
                "leases": lease_counts(self.engine, now=datetime.now(UTC)),
                "guards": guard_states(self.engine, self.settings), "held": held_subnets(self.engine)}

    async def over_time(self, request: web.Request) -> web.Response:
        window = request.match_info["window"]
        if window not in queries.WINDOWS:
            raise web.HTTPNotFound()
        data = await self._over_time[window].get()
        return web.Response(text=json.dumps(data), content_type="application/json")

    # -- the table and one proxy -----------------------------------------------------------------
    async def table(self, request: web.Request) -> web.Response:
        q = request.query
        filters = {k: q.get(k, "").strip()[:200] for k in queries.FILTERS}
        if filters["code"]:  # params.py: ASCII digits (codes are 25 to 49), else 400
            filters["code"] = str(number(filters["code"], "code", 0, 999))
        sort = q.get("sort", "proxy") if q.get("sort") in queries.SORTS else "proxy"
        descending = q.get("desc") == "1"
        page = number(q.get("page", "").strip(), "page", 1, 10**9, default=1)
        result = await self.reads.heavy(queries.proxy_table, self.engine, filters, sort, descending, page)
        return self._html(request, "table.html", result=result, filters=filters, sort=sort, descending=descending,
                          sorts=list(queries.SORTS), query=_query)

    async def proxy(self, request: web.Request) -> web.Response:
        try:
            proxy_id = number(request.match_info["id"], "proxy id", 1, 2**63 - 1)
        except BadParameter:  # not an id we could have stored (params.py rule 3)
            proxy_id = None
        found = None if proxy_id is None else await self.reads.light(queries.proxy_row, self.engine, proxy_id)
        if found is None:
            raise web.HTTPNotFound(text="no such proxy")
        row, exits, leases = found
        history = await self.reads.light(proxy_history, self.engine, row.key, limit=50)
        checks = history.checks if history else []
        chart = {"t": [int(c.checked_at.timestamp()) for c in reversed(checks)],
                 "phases": _phases(list(reversed(checks)))}
        explained = explain_text(row.code) if row.code in EXPLANATIONS else None
        return self._html(request, "proxy.html", row=row, exits=exits, leases=leases, now=datetime.now(UTC), checks=checks,
                          reports=history.reports if history else [], explained=explained, chart=chart)


PHASES = ("connect", "proxy_handshake", "tls", "ttfb", "transfer")


def _phases(checks: list[Any]) -> dict[str, list[float | None]]:
    """Per check, each phase's time summed over the probes that ran (ms); None where none reported it."""
    shaped: dict[str, list[float | None]] = {p: [] for p in PHASES}
    for c in checks:
        for phase in PHASES:
            times = [p["phases"][phase] for p in c.probes if isinstance(p.get("phases"), dict) and phase in p["phases"]]
            shaped[phase].append(round(sum(times), 1) if times else None)
    return shaped


def _query(filters: dict[str, str], **changes: Any) -> str:
    """The table's query string with ``changes`` applied (empty values left out)."""
    from urllib.parse import urlencode

    merged = {**filters, **{k: str(v) for k, v in changes.items()}}
    return urlencode({k: v for k, v in merged.items() if v not in ("", "0", None)})


__all__ = ["Page"]
