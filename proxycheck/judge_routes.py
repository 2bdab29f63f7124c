"""The judge's pure part: request in, answer out (judge.py rule 6); no sockets here.

``JudgeOptions`` (whom to ban, how), ``Request`` and ``Answer``, and the endpoints, each a
function ``(request, options) -> answer`` listed in ``ROUTES``. judge.py's docstring lists the
endpoints and their rules; ``judge.probe_routes()`` gives the routes probes declare for their own
targets (``TargetSpec.serve``). ``PRESET_ROUTES`` names the endpoint standing in for each ban
preset.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import json
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qs, quote

BAN_MODES = ("sorry", "429", "unusual", "cloudflare")
UNUSUAL_TRAFFIC = "Our systems have detected unusual traffic from your computer network"


@dataclass(frozen=True)
class JudgeOptions:
    """How a judge listens and whom it treats as banned; validated on construction."""

    listen: tuple[str, int] = ("127.0.0.1", 8080)
    tls_listen: tuple[str, int] | None = None
    cert_file: str | None = None
    key_file: str | None = None
    ban_ips: frozenset[str] = frozenset()
    ban_mode: str = "sorry"
    # (preset, peers it bans) pairs: each preset's endpoint bans those peers its own way.
    target_bans: tuple[tuple[str, frozenset[str]], ...] = ()
    max_request_line: int = 16384
    max_body: int = 65536
    idle_timeout: float = 60.0
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.ban_mode not in BAN_MODES:
            raise ValueError(f"ban_mode {self.ban_mode!r} is unknown; choose one of {', '.join(BAN_MODES)}")
        if self.tls_listen is not None and not (self.cert_file and self.key_file):
            raise ValueError("tls_listen needs cert_file and key_file (PEM certificate chain and private key)")
        for ip in self.ban_ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ValueError(f"ban_ips: {ip!r} is not an IP address") from None
        # Normalised once, so "::ffff:10.0.0.1" and "10.0.0.1" compare equal at request time.
        object.__setattr__(self, "ban_ips", frozenset(_normal_ip(ip) for ip in self.ban_ips))
        for preset, ips in self.target_bans:
            if preset not in PRESET_ROUTES:
                raise ValueError(f"target_bans: {preset!r} is not a preset ({', '.join(PRESET_ROUTES)})")
            for ip in ips:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    raise ValueError(f"target_bans: {ip!r} is not an IP address") from None
        normal = tuple((p, frozenset(_normal_ip(ip) for ip in ips)) for p, ips in self.target_bans)
        object.__setattr__(self, "target_bans", normal)
        if self.max_request_line < 64:
            raise ValueError("max_request_line must be at least 64 bytes")
        if self.max_body < 0:
            raise ValueError("max_body must be 0 or more bytes")
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be greater than 0 seconds")

    def banned_on(self, preset: str, peer: str) -> bool:
        return any(p == preset and peer in ips for p, ips in self.target_bans)


# --- the pure part: request in, answer out ----------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What an endpoint sees: nothing here is a socket."""

    method: str
    target: str  # the request target exactly as received, e.g. "/get?a=1"
    headers: tuple[tuple[str, str], ...]
    peer: str
    peer_port: int
    scheme: str  # "http" or "https"
    local: str  # "host:port" of the listening socket, for URLs when Host is absent

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.header('Host') or self.local}{self.target}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # a refusal: close the connection after answering


def _json(status: int, obj: object, **kw) -> Answer:
    return Answer(status, (json.dumps(obj, indent=2) + "\n").encode(), "application/json", **kw)


def _text(status: int, text: str, content_type: str = "text/plain; charset=utf-8", **kw) -> Answer:
    return Answer(status, text.encode(), content_type, **kw)


def refusal(status: int, message: str) -> Answer:
    return _json(status, {"error": message, "status": status}, close=True)


def _title(name: str) -> str:
    """httpbin's header naming: ``x-forwarded-for`` -> ``X-Forwarded-For``."""
    return "-".join(part.capitalize() for part in name.split("-"))


def _args(query: str) -> dict[str, str | list[str]]:
    return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(query, keep_blank_values=True).items()}


def _get(req: Request, options: JudgeOptions) -> Answer:
    headers: dict[str, str] = {}
    for name, value in req.headers:
        key = _title(name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return _json(200, {"args": _args(req.query), "headers": headers, "origin": req.peer, "url": req.url})


def _headers(req: Request, options: JudgeOptions) -> Answer:
    """httpbin's ``/headers``: the headers only, no query string and no origin. Not a usable
    judge (the checker's nonce does not come back); served so the self-test's refusal of it can
    be shown (tests/test_selftest.py)."""
    return _json(200, {"headers": json.loads(_get(req, options).body)["headers"]})


def _azenv(req: Request, options: JudgeOptions) -> Answer:
    """The AZ Environment 1.04 page (azenv.php): ``KEY = value`` lines inside ``<pre>``."""
    lines = [f"HTTP_{name.upper().replace('-', '_')} = {value}" for name, value in req.headers]
    if req.scheme == "https":
        lines.append("HTTPS = on")
    lines += [
        f"REMOTE_ADDR = {req.peer}",
        f"REMOTE_PORT = {req.peer_port}",
        f"REQUEST_METHOD = {req.method}",
        f"REQUEST_URI = {req.target}",
        f"REQUEST_TIME = {int(time.time())}",
    ]
    # Values are HTML-escaped (real azenv.php prints them raw): a public judge must not echo markup.
    body = "\n".join(html.escape(line, quote=False) for line in lines)
    page = (
        "<html>\n<head>\n<title>AZ Environment variables 1.04</title>\n</head>\n<body>\n<pre>\n"
        f"{body}\n</pre>\n</body>\n</html>\n"
    )
    return _text(200, page, "text/html; charset=utf-8")


def _ip(req: Request, options: JudgeOptions) -> Answer:
    if _args(req.query).get("format") == "text":
        return _text(200, req.peer)
    return _json(200, {"origin": req.peer})


def make_png(width: int = 64, height: int = 64, seed: bytes = b"proxycheck-judge") -> bytes:
    """A deterministic RGB PNG of noise (noise does not compress: ~12 KB at 64x64)."""
    pixels = hashlib.shake_256(seed).digest(width * height * 3)
    stride = width * 3
    raw = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


IMAGE_PNG = make_png()


def _image(req: Request, options: JudgeOptions) -> Answer:
    return Answer(200, IMAGE_PNG, "image/png")


def _long(req: Request, options: JudgeOptions) -> Answer:
    return _text(200, f"ok {len(req.target)}")


def _health(req: Request, options: JudgeOptions) -> Answer:
    return _text(200, "ok")


_ANCHOR_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>reCAPTCHA</title></head>\n"
    '<body><div id="recaptcha-anchor" role="checkbox" aria-checked="false">I\'m not a robot</div></body></html>\n'
)
_UNUSUAL_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sorry...</title></head><body>\n"
    f"<div>{UNUSUAL_TRAFFIC}. This page checks to see if it's really you sending the requests, "
    "and not a robot.</div>\n<div>IP address: {ip}<br>URL: {url}</div>\n</body></html>\n"
)
_CLOUDFLARE_PAGE = (
    "<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head>\n"
    '<body><div id="cf-challenge-running"></div>'
    "<script>window._cf_chl_opt={cType: 'managed'};</script>"
    '<script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1"></script></body></html>\n'
)


def _ban_target(req: Request, options: JudgeOptions) -> Answer:
    """A reCAPTCHA anchor for most peers; Google's (or Cloudflare's) ban answer for ``ban_ips``,
    and the recaptcha preset's (a 429 "unusual traffic" page) for its ``target_bans``."""
    unusual = _UNUSUAL_PAGE.format(ip=html.escape(req.peer), url=html.escape(req.url))
    if options.banned_on("recaptcha", req.peer):
        return _text(429, unusual, "text/html; charset=utf-8")
    if req.peer not in options.ban_ips:
        return _text(200, _ANCHOR_PAGE, "text/html; charset=utf-8")
    return _ban_answer(req, options.ban_mode, unusual)


def _ban_answer(req: Request, mode: str, unusual: str) -> Answer:
    """Google's ban answer per ``mode`` (``BAN_MODES``), or Cloudflare's challenge."""
    if mode == "sorry":
        location = f"https://www.google.com/sorry/index?continue={quote(req.url, safe='')}&q=judge"
        page = f'<HTML><HEAD><TITLE>302 Moved</TITLE></HEAD><BODY><H1>302 Moved</H1><A HREF="{html.escape(location)}">here</A>.</BODY></HTML>\n'
        return _text(302, page, "text/html; charset=UTF-8", headers=(("Location", location),))
    if mode == "429":
        return _text(429, unusual, "text/html; charset=utf-8")
    if mode == "unusual":
        return _text(403, unusual, "text/html; charset=utf-8")
    return _cloudflare_challenge(req)


def _cloudflare_challenge(req: Request) -> Answer:
    ray = hashlib.sha256(req.peer.encode()).hexdigest()[:16]
    return _text(
        403,
        _CLOUDFLARE_PAGE,
        "text/html; charset=UTF-8",
        headers=(("cf-mitigated", "challenge"), ("cf-ray", f"{ray}-JDG"), ("Server", "cloudflare")),
    )


def _google_search(req: Request, options: JudgeOptions) -> Answer:
    if options.banned_on("google_search", req.peer):
        return _ban_answer(req, "sorry", "")
    return _text(200, "<!DOCTYPE html><html><head><title>proxycheck - Search</title></head><body>results</body></html>\n",
                 "text/html; charset=utf-8")


def _hcaptcha(req: Request, options: JudgeOptions) -> Answer:
    if options.banned_on("hcaptcha", req.peer):
        return _json(429, {"pass": False, "error": "rate limited"})
    return _json(200, {"pass": True, "c": {"type": "hsw", "req": "judge"}})


_TURNSTILE_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in</title>"
    '<script src="https://challenges.cloudflare.com/turnstile/v0/api.js" async defer></script></head>\n'
    '<body><div class="cf-turnstile" data-sitekey="1x00000000000000000000AA"></div></body></html>\n'
)


def _turnstile(req: Request, options: JudgeOptions) -> Answer:
    if options.banned_on("turnstile", req.peer):
        return _cloudflare_challenge(req)
    return _text(200, _TURNSTILE_PAGE, "text/html; charset=utf-8")


def _funcaptcha(req: Request, options: JudgeOptions) -> Answer:
    if options.banned_on("funcaptcha", req.peer):
        return _text(403, "Access denied\n")
    return _json(200, {"token": "judge|r=eu-west-1|meta=3", "challenge_url": "", "noscript": "Disable"})


# The endpoint standing in for each ban preset (tests/world configures one target per preset).
PRESET_ROUTES = {
    "recaptcha": "/recaptcha/api2/anchor",
    "google_search": "/search",
    "hcaptcha": "/checksiteconfig",
    "turnstile": "/turnstile",
    "funcaptcha": "/fc/gt2/public_key",
}


Route = Callable[[Request, JudgeOptions], Answer]

ROUTES: dict[str, Route] = {
    "/get": _get,
    "/headers": _headers,
    "/azenv": _azenv,
    "/ip": _ip,
    "/image.png": _image,
    "/long": _long,
    "/health": _health,
    "/recaptcha/api2/anchor": _ban_target,
    "/ban": _ban_target,
    "/search": _google_search,
    "/checksiteconfig": _hcaptcha,
    "/turnstile": _turnstile,
    "/fc/gt2/public_key": _funcaptcha,
}


def answer(req: Request, options: JudgeOptions, more: dict[str, Route] | None = None) -> Answer:
    """Route one request to ``ROUTES``, else to ``more`` (the routes probes declare:
    ``judge.probe_routes()``); never raises for anything a client can send."""
    if req.method not in ("GET", "HEAD"):
        return _json(405, {"error": f"method {req.method} not allowed", "status": 405}, headers=(("Allow", "GET, HEAD"),))
    route = ROUTES.get(req.path) or (more or {}).get(req.path)
    if route is None:
        return _json(404, {"error": "not found", "path": req.path, "status": 404})
    return route(req, options)


def _normal_ip(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)
