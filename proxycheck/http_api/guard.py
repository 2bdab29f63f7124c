"""Who may talk to the endpoint: the ``Host:`` rule, the bearer token, JSON-only bodies.

Rules (checked in this order, before any route runs):
1. ``Host:`` must name this endpoint (defence against DNS rebinding: a web page whose name was
   re-pointed at 127.0.0.1 sends *its own* name as Host). Allowed: the listen address with the
   bound port; ``localhost`` with that port when listening on loopback (and loopback IPs when
   listening on the name ``localhost``); any IP literal with that
   port when listening on every interface (a rebinding attack needs a DNS name, never an IP);
   and every ``[http].allowed_hosts`` name, on any port (a reverse proxy may keep its own).
   Anything else, a missing Host included, is 421 Misdirected Request. This applies to /healthz too.
2. Every route but ``/healthz`` needs ``Authorization: Bearer <token>`` (constant-time compare),
   else 401 with ``WWW-Authenticate: Bearer``.
3. A ``POST`` body must be ``application/json``, else 415: the content types a web page may send
   cross-site without a CORS preflight (text/plain, forms) are exactly the ones refused.
4. Rules 2 and 3 are for the API. The status page (``/`` and ``/ui/...``, http_api/page/) has
   its own lock: a session cookie from a login with the same token, and an Origin check plus a
   CSRF token on its form POSTs (page/session.py). The page's cookie opens no API route.
The host rule is pure (``HostRule``) and tested on literal headers.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

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


def auth_middleware(token: Callable[[], str]):
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not is_page(request.path):
            expected = f"Bearer {token()}".encode()
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not token() or not hmac.compare_digest(given, expected):
                return error(401, "unauthorized", "send Authorization: Bearer <token> (`proxycheck token` prints it)",
                             headers={"WWW-Authenticate": 'Bearer realm="proxycheck"'})
        return await handler(request)

    return check_token


@web.middleware
async def json_bodies_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST" and request.content_type != "application/json" and not is_page(request.path):
        return error(415, "unsupported_media_type",
                     f"POST bodies must be Content-Type: application/json, not {request.content_type!r}")
    return await handler(request)
