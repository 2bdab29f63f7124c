"""Who may talk to the endpoint: the ``Host:`` rule, the bearer token, JSON-only bodies.

Rules (checked in this order, before any route runs):
1. ``Host:`` must name this endpoint (defence against DNS rebinding: a web page whose name was
   re-pointed at 127.0.0.1 sends *its own* name as Host). Allowed: the listen address with the
   bound port; ``localhost`` with that port when listening on loopback (and loopback IPs when
   listening on the name ``localhost``); any IP literal with that
   port when listening on every interface (a rebinding attack needs a DNS name, never an IP);
   and every ``[http].allowed_hosts`` name, on any port (a reverse proxy may keep its own).
   Anything else, a missing Host included, is 421 Misdirected Request. This applies to /healthz too.
2. Every route but ``/healthz`` needs ``Authorization: Bearer <token>`` (constant-time compare;
   the scheme name in any letter case, RFC 9110 §11.1), else 401 with ``WWW-Authenticate: Bearer``.
3. A ``POST`` body must be ``application/json``, else 415: the content types a web page may send
   cross-site without a CORS preflight (text/plain, forms) are exactly the ones refused.
4. Rules 2 and 3 are for the API. The status page (``/`` and ``/ui/...``, http_api/page/) has
   its own lock: a session cookie from a login with the same token, and an Origin check plus a
   CSRF token on its form POSTs (page/session.py). The page's cookie opens no API route.
5. A wrong credential (a bearer token, or the page's login form) is logged with the client's
   address and never the value; after ``Throttle.limit`` of them from one address within
   ``Throttle.window`` seconds, every request from it that needs the token gets 429 with
   ``Retry-After`` until the oldest leaves the window, the right token included (else the 429s
   would still tell a guesser which guess was right). A request with no credential at all is
   401 but guesses nothing, so it is not counted: a tokenless scraper cannot lock its host out.
6. No API answer may be cached (``Cache-Control: no-store``): ``/proxy``, ``/proxies/healthy``
   and ``/lease`` carry passwords, and every other answer is about this moment.
7. Bad input is the client's mistake, never a 500 (params.py): a query value or path
   parameter with a control character or a parameter a route cannot take is 400 with our words, and a malformed HTTP
   request is one log line (``OneLineServerLog``), never a traceback.
The host rule and the throttle are pure (``HostRule``, ``Throttle``) and tested on literal input.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .params import BadParameter, plain_text

log = logging.getLogger("proxycheck.http")

def is_page(path: str) -> bool:
    """The status page's paths (rule 4)."""
    return path == "/" or path == "/ui" or path.startswith("/ui/")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz"})
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps({"error": code, "detail": detail}), status=status,
                        content_type="application/json", headers=headers)


def split_host(value: str, default_port: int = 80) -> tuple[str, int] | None:
    """``Host:`` as (lower-case name or IP without brackets or trailing dot, port); None if malformed."""
    value = value.strip()
    if not value or any(c in value for c in "/?#@\\ \t"):
        return None
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.rstrip("."), (default_port if port is None else port)


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class HostRule:
    """Which ``Host:`` values name this endpoint (rule 1)."""

    listen_host: str  # as configured: an IP, a name, "" / 0.0.0.0 / :: for every interface
    port: int  # the bound port
    allowed: frozenset[tuple[str, int | None]] = frozenset()  # (name, port or None for any)

    @classmethod
    def build(cls, listen_host: str, port: int, allowed_hosts: Iterable[str] = ()) -> HostRule:
        allowed = set()
        for entry in allowed_hosts:
            parsed = split_host(entry, default_port=-1)
            if parsed is not None:
                name, p = parsed
                allowed.add((name, None if p == -1 else p))
        return cls(listen_host.strip("[]").lower().rstrip("."), port, frozenset(allowed))

    @property
    def everywhere(self) -> bool:
        ip = _ip(self.listen_host)
        return self.listen_host == "" or (ip is not None and ip.is_unspecified)

    @property
    def loopback(self) -> bool:
        ip = _ip(self.listen_host)
        return self.listen_host in LOCAL_NAMES or (ip is not None and ip.is_loopback)

    def allows(self, header: str | None) -> bool:
        parsed = split_host(header or "")
        if parsed is None:
            return False
        name, port = parsed
        if (name, None) in self.allowed or (name, port) in self.allowed:
            return True
        if port != self.port:
            return False
        if name == self.listen_host or ((self.loopback or self.everywhere) and name in LOCAL_NAMES):
            return True
        ip = _ip(name)
        if ip is None:
            return False
        if self.everywhere:
            return True
        listen_ip = _ip(self.listen_host)
        if listen_ip is None:  # listening on a name: "localhost" binds loopback addresses
            return self.loopback and ip.is_loopback
        return ip == listen_ip

    def expected(self) -> str:
        shown = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{shown or '<any IP>'}:{self.port}"


def host_middleware(rule: Callable[[], HostRule]):
    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        current = rule()
        if not current.allows(request.headers.get("Host")):
            shown = (request.headers.get("Host") or "")[:100]
            return error(421, "wrong_host", f"Host {shown!r} does not name this endpoint ({current.expected()}); "
                                            "if it should, add it to [http].allowed_hosts")
        return await handler(request)

    return check_host


def token_matches(given: str, token: str) -> bool:
    """Constant-time; never true for an empty token (rule 2)."""
    return bool(token) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


def bearer(header: str | None) -> str | None:
    """The credentials of ``Authorization: Bearer <token>`` (scheme in any case), else None."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


class Throttle:
    """Failed credentials per client address in a sliding window (rule 5). Memory is bounded:
    at most ``limit`` times per address and ``max_clients`` addresses (the stalest dropped)."""

    def __init__(self, limit: int = 10, window: float = 60.0, *, max_clients: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_clients, self._clock = limit, window, max_clients, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> int:
        """Whole seconds until ``address`` may try again; 0 when it may now."""
        times = self._failures.get(address)
        if times is None or len(times) < self.limit:
            return 0
        left = self.window - (self._clock() - times[0])
        return max(1, math.ceil(left)) if left > 0 else 0

    def failed(self, address: str) -> int:
        """Count one failure; the number within the window, this one included."""
        now = self._clock()
        times = self._failures.pop(address, None) or deque(maxlen=self.limit)
        while times and now - times[0] >= self.window:
            times.popleft()
        times.append(now)
        self._failures[address] = times  # most recent last
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        return len(times)


def too_many(wait: int, page: bool = False) -> web.Response:
    detail = f"too many wrong credentials from this address; try again in {wait} s"
    headers = {"Retry-After": str(wait)}
    if page:
        return web.Response(status=429, text=detail, headers=headers)
    return error(429, "too_many_failures", detail, headers=headers)


def refused(request: web.Request, throttle: Throttle, what: str) -> None:
    """Rule 5: log a wrong credential (its value never) and count it against the address."""
    address = request.remote or "unknown address"
    count = throttle.failed(address)
    log.warning("HTTP %s %s from %s: %s (%d in the last %g s)", request.method, request.path[:100], address, what,
                count, throttle.window)
    if count >= throttle.limit:
        log.warning("HTTP: %d wrong credentials from %s within %g s: answering 429 to its requests for the token "
                    "for %d s", count, address, throttle.window, throttle.retry_after(address))


def auth_middleware(token: Callable[[], str], throttle: Throttle):
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or is_page(request.path):
            return await handler(request)
        wait = throttle.retry_after(request.remote or "unknown address")
        if wait:
            return too_many(wait)
        header = request.headers.get("Authorization")
        given = bearer(header)
        if given is None or not token_matches(given, token()):
            if header is not None:  # no credential at all guesses nothing (rule 5)
                refused(request, throttle, "wrong bearer token" if given is not None else
                        "Authorization is not `Bearer <token>`")
            return error(401, "unauthorized", "send Authorization: Bearer <token> (`proxycheck token` prints it)",
                         headers={"WWW-Authenticate": 'Bearer realm="proxycheck"'})
        return await handler(request)

    return check_token


async def no_store(request: web.Request, response: web.StreamResponse) -> None:
    """Rule 6, as an ``on_response_prepare`` signal: it reaches streamed answers too."""
    if not is_page(request.path):
        response.headers["Cache-Control"] = "no-store"


@web.middleware
async def bad_input(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rule 7: a ``BadParameter`` from any route (or a control character in any query value or
    path parameter) is 400."""
    try:
        plain_text(request.query)
        plain_text(request.match_info)
        return await handler(request)
    except BadParameter as exc:
        if is_page(request.path):
            return web.Response(status=400, text=str(exc))
        return error(400, "bad_request", str(exc))


class OneLineServerLog(logging.Filter):
    """Rule 7: aiohttp logs a request it cannot parse with a traceback, and the exception's text
    quotes the raw line (which may be an Authorization header). One line instead: the address
    and the first line of aiohttp's reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = (exc.message or type(exc).__name__).splitlines()[0].strip().rstrip(":")[:200]
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "unknown address"
            record.msg, record.args = "HTTP: malformed request from %s: %s (answered 400)", (remote, reason)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def server_log() -> logging.Logger:
    """The logger aiohttp's server writes to (``AppRunner(logger=...)``), with rule 7's filter."""
    logger = logging.getLogger("proxycheck.http.server")
    if not any(isinstance(f, OneLineServerLog) for f in logger.filters):
        logger.addFilter(OneLineServerLog())
    return logger


@web.middleware
async def json_bodies_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST" and request.content_type != "application/json" and not is_page(request.path):
        return error(415, "unsupported_media_type",
                     f"POST bodies must be Content-Type: application/json, not {request.content_type!r}")
    return await handler(request)
