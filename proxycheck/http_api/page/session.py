"""Who may see the status page: a browser logs in once with the endpoint's token.

Rules:
1. ``POST /ui/login`` with the form field ``token`` (constant-time compare) opens a session: a
   random 256-bit id kept in memory (sessions end with the daemon, and after ``TTL`` seconds),
   sent as an ``HttpOnly; SameSite=Strict; Path=/ui`` cookie (``Secure`` when served over TLS).
   The API routes never accept this cookie: they keep the bearer token (guard.py). A wrong
   token is logged and counted against the address like a wrong bearer (guard.py rule 5).
2. Every ``POST`` under ``/ui`` must carry an ``Origin`` naming this endpoint (the Host rule has
   already checked ``Host:``), else 403. Together with SameSite=Strict a foreign page can neither
   submit the login form (login CSRF) nor ride a session. Logged-in POSTs (logout) must also
   carry the session's CSRF token as the form field ``csrf``.
3. Pages need a live session: a GET without one is sent to the login form (303), anything else
   gets 401. ``/ui/login`` and ``/ui/static/`` (the vendored chart library, CSS, JS: no fleet
   data) are open.
4. Every ``/ui`` answer carries a strict Content-Security-Policy (scripts and styles only from
   ``/ui/static``, no inline script), ``frame-ancestors 'none'``, ``nosniff``, and a referrer only to itself
   (``no-referrer`` would make browsers send ``Origin: null``, which rule 2 refuses).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from ..guard import Handler, is_page, token_matches

PREFIX = "/ui"
COOKIE = "proxycheck_session"
TTL = 12 * 3600.0  # seconds a session lasts
MAX_SESSIONS = 256  # the oldest is dropped beyond this: memory stays bounded
OPEN = ("/ui/login", "/ui/static/")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin"}  # no-referrer would make Origin "null"


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    expires: float  # time.monotonic()


class Sessions:
    """The live sessions of one daemon (rule 1)."""

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self._clock = ttl, clock
        self._live: dict[str, Session] = {}

    def open(self) -> Session:
        now = self._clock()
        self._live = {k: s for k, s in self._live.items() if s.expires > now}
        while len(self._live) >= MAX_SESSIONS:
            self._live.pop(min(self._live.values(), key=lambda s: s.expires).id)
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + self.ttl)
        self._live[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._live.get(session_id or "")
        if session is None or session.expires <= self._clock():
            return None
        return session

    def close(self, session_id: str) -> None:
        self._live.pop(session_id, None)


def same_origin(request: web.Request) -> bool:
    """The ``Origin`` header names the host this request was sent to (rule 2)."""
    origin = request.headers.get("Origin", "")
    try:
        return bool(origin) and origin != "null" and urlsplit(origin).netloc.lower() == request.host.lower()
    except ValueError:
        return False


def set_cookie(response: web.StreamResponse, request: web.Request, session: Session, ttl: float) -> None:
    response.set_cookie(COOKIE, session.id, max_age=int(ttl), path=PREFIX, httponly=True, samesite="Strict",
                        secure=request.secure or None)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers["Cache-Control"] = "no-store"


def session_middleware(sessions: Sessions):
    """Rules 2-4 for every path under ``/ui`` (and ``/``, which leads there)."""

    @web.middleware
    async def check_session(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_page(request.path):
            return await handler(request)
        session = sessions.get(request.cookies.get(COOKIE))
        request["session"] = session
        if request.method not in ("GET", "HEAD") and not same_origin(request):
            response: web.StreamResponse = web.Response(status=403, text="cross-origin POST refused (Origin must name this endpoint)")
        elif session is None and not request.path.startswith(OPEN):
            if request.method in ("GET", "HEAD"):
                response = redirect(f"{PREFIX}/login")
            else:
                response = web.Response(status=401, text="log in first")
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # 404 and the like: the same headers, then on its way
                _secure(request, exc)
                raise
        _secure(request, response)
        return response

    return check_session


__all__ = ["COOKIE", "PREFIX", "Session", "Sessions", "is_page", "redirect", "same_origin", "session_middleware", "set_cookie",
           "token_matches"]
