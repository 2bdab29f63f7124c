"""The self-hostable judge: the far end of every probe, on a host you control.

A probe asks a proxy to fetch a judge URL; the judge answers with what it saw (peer address,
headers), a known image, a long-URL echo, or a ban page for exit addresses listed as banned.
Our tests run it on loopback as the stand-in for the internet.

Rules:
1. It answers, it never forwards. A request in absolute-form for any host but this judge's
   own listening address is refused with 400, ``CONNECT`` with 405: the judge can never be
   used as an open proxy, whatever the client sends.
2. "origin" is the TCP peer address and nothing else; forwarding headers are echoed, never
   believed.
3. Input is bounded before it is read: request line > ``max_request_line`` -> 414, body
   > ``max_body`` -> 413, more than 100 headers -> 431 (the stdlib's cap), idle keep-alive
   connections close after ``idle_timeout``. A refusal always closes the connection.
4. HTTP/1.1 keep-alive: every answer carries Content-Length, so a checker may send several
   probes over one connection.
5. Quiet and sturdy: no per-request log lines unless ``verbose``; an exception in an endpoint
   answers 500 and the server keeps serving.
6. Endpoints are pure functions ``(request, options) -> answer`` listed in ``ROUTES``; the
   socket handling around them is the only I/O.

Endpoints (the same on HTTP and HTTPS)::

    /get                    httpbin JSON: args, headers (Title-Case), origin, url
    /azenv                  azenv.php page: REMOTE_ADDR = ..., HTTP_X_FORWARDED_FOR = ..., ...
    /ip                     {"origin": "<peer>"}; /ip?format=text gives the bare address
    /image.png              a 64x64 PNG (IMAGE_PNG, ~12 KB)
    /long                   "ok <length of the request target>", for long-GET probes
    /health                 "ok"
    /recaptcha/api2/anchor  a small page; for ban_ips peers a ban per ban_mode (also /ban):
                            sorry -> 302 to google.com/sorry, 429 / unusual -> 429 / 403
                            "unusual traffic" page, cloudflare -> 403 cf-mitigated: challenge

One stand-in per ban preset (``proxycheck.bans.PRESETS``), each banning the peers listed for
it in ``target_bans`` with that provider's ban answer (docs/ban-presets.md says where each comes from):

    /recaptcha/api2/anchor  recaptcha: 429 "unusual traffic" page
    /search                 google_search: 302 to google.com/sorry/index
    /checksiteconfig        hcaptcha: 200 {"pass": true, "c": {...}}; banned 429 {"pass": false} [inferred]
    /turnstile              turnstile: 403 cf-mitigated: challenge, "Just a moment..."
    /fc/gt2/public_key      funcaptcha: 200 {"token": ...}; banned 403 "Access denied" [inferred]
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import json
import logging
import os
import signal
import socket
import socketserver
import ssl
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, quote, urlsplit

logger = logging.getLogger("proxycheck.judge")

BAN_MODES = ("sorry", "429", "unusual", "cloudflare")
UNUSUAL_TRAFFIC = "Our systems have detected unusual traffic from your computer network"
SERVER_NAME = "proxycheck-judge"
_TLS_HANDSHAKE_TIMEOUT = 10.0


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


def parse_listen(text: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"``, ``"[::1]:8080"``, ``":8080"`` (all IPv4 interfaces) -> ``(host, port)``."""
    raw = text.strip()
    if raw.startswith("["):
        host, bracket, rest = raw[1:].partition("]")
        if not bracket or not rest.startswith(":") or not host:
            raise ValueError(f"listen address {text!r}: write an IPv6 address as [ADDRESS]:PORT, e.g. [::1]:8080")
        port_text = rest[1:]
    else:
        host, colon, port_text = raw.rpartition(":")
        if not colon:
            raise ValueError(f"listen address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 or :8080")
        if ":" in host:
            raise ValueError(f"listen address {text!r}: put an IPv6 address in brackets, e.g. [::1]:8080")
        host = host or "0.0.0.0"
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"listen address {text!r}: port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


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


def answer(req: Request, options: JudgeOptions) -> Answer:
    """Route one request; never raises for anything a client can send."""
    if req.method not in ("GET", "HEAD"):
        return _json(405, {"error": f"method {req.method} not allowed", "status": 405}, headers=(("Allow", "GET, HEAD"),))
    route = ROUTES.get(req.path)
    if route is None:
        return _json(404, {"error": "not found", "path": req.path, "status": 404})
    return route(req, options)


def origin_form(target: str, local: tuple[str, int], scheme: str) -> str | None:
    """The origin-form of ``target`` if it addresses this judge, else ``None`` (rule 1)."""
    if target.startswith("/"):
        return target
    if "://" not in target:
        return None  # authority-form outside CONNECT, "*", garbage
    try:
        parts = urlsplit(target)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
    except ValueError:
        return None
    if parts.scheme != scheme or port != local[1] or not _same_host(host, local[0]):
        return None
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def _normal_ip(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


# --- the I/O shell -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.options.idle_timeout
        super().setup()

    def handle_one_request(self) -> None:
        options = self.server.options
        try:
            line = self.rfile.readline(options.max_request_line + 3)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if not line.endswith(b"\n"):
            self.close_connection = True
            if len(line) > options.max_request_line:
                self.request_version, self.command, self.requestline = "", "", ""
                self._send(refusal(414, f"request line longer than {options.max_request_line} bytes"))
            return  # else: the peer closed mid-line
        if len(line.rstrip(b"\r\n")) > options.max_request_line:
            self._send(refusal(414, f"request line longer than {options.max_request_line} bytes"))
            return
        self.raw_requestline = line
        if not self.parse_request():  # answers 400/431/505 itself, through send_error
            return
        try:
            self._send(self._dispatch())
        except OSError:
            self.close_connection = True

    def _dispatch(self) -> Answer:
        options = self.server.options
        if self.command == "CONNECT":
            return refusal(405, "this judge is not a proxy: CONNECT is refused")
        if self.headers.get("Transfer-Encoding"):
            return refusal(501, "chunked request bodies are not supported; send Content-Length")
        length_text = self.headers.get("Content-Length", "0").strip()
        if not length_text.isdigit():
            return refusal(400, f"Content-Length {length_text!r} is not a number")
        if int(length_text) > options.max_body:
            return refusal(413, f"request body longer than {options.max_body} bytes")
        self.rfile.read(int(length_text))  # drained so the next request on this connection parses
        local = self.server.server_address[:2]
        target = origin_form(self.path, local, self.server.scheme)
        if target is None:
            return refusal(400, f"this judge is not a proxy: request target {self.path[:200]!r} refused")
        req = Request(
            method=self.command,
            target=target,
            headers=tuple(self.headers.items()),
            peer=_normal_ip(self.client_address[0]),
            peer_port=self.client_address[1],
            scheme=self.server.scheme,
            local=self.server.url_host,
        )
        try:
            return answer(req, options)
        except Exception:
            logger.exception("judge endpoint %s failed", req.path)
            return _json(500, {"error": "internal error in the judge", "status": 500})

    def _send(self, ans: Answer) -> None:
        self.log_request(ans.status, len(ans.body))
        self.send_response_only(ans.status)
        names = {name.lower() for name, _ in ans.headers}
        if "server" not in names:
            self.send_header("Server", SERVER_NAME)
        self.send_header("Date", self.date_time_string())
        for name, value in ans.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", ans.content_type)
        self.send_header("Content-Length", str(len(ans.body)))
        self.send_header("Cache-Control", "no-store")
        if ans.close or self.close_connection:
            self.send_header("Connection", "close")  # also sets self.close_connection
        buffer = self.__dict__.setdefault("_headers_buffer", [])  # absent for HTTP/0.9: no head at all
        if self.request_version != "HTTP/0.9":
            buffer.append(b"\r\n")
        if self.command != "HEAD":
            # One write for head and body: two small writes on a keep-alive connection meet
            # Nagle's algorithm and the peer's delayed ACK, and stall ~40 ms.
            buffer.append(ans.body)
        self.flush_headers()
        if ans.close:
            self._linger()

    def _linger(self) -> None:
        """Half-close, then drain what the client is still sending (a body, an overlong line).

        Closing a socket with unread input makes the kernel send RST, and a client that gets
        the RST before reading our refusal sees "connection reset" instead of the 413/414.
        """
        deadline = time.monotonic() + 1.0
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.2)
            while time.monotonic() < deadline and self.connection.recv(65536):
                pass
        except (OSError, ValueError):
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's parse errors (400, 431, 505), answered as JSON refusals."""
        self._send(refusal(code, message or HTTPStatus(code).phrase))

    def log_message(self, format: str, *args: object) -> None:
        if self.server.options.verbose:
            logger.info("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a checker's burst of probes overflows it, the kernel
    # drops SYNs, and connects stall for the 1 s SYN retransmit (measured: 57 of 200 at once).
    request_queue_size = 1024
    daemon_threads = True
    block_on_close = True  # server_close() joins handler threads; stop() unblocks them first

    def __init__(self, address: tuple[str, int], options: JudgeOptions, ssl_context: ssl.SSLContext | None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.options = options
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context else "http"
        self._live: set[int] = set()  # descriptors of open connections
        self._live_lock = threading.Lock()
        self._closing = False
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url_host(self) -> str:
        host, port = self.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def finish_request(self, request, client_address) -> None:
        fd = request.fileno()
        with self._live_lock:
            if self._closing:
                return
            self._live.add(fd)
        conn = request
        try:
            if self.ssl_context is not None:
                request.settimeout(_TLS_HANDSHAKE_TIMEOUT)
                conn = self.ssl_context.wrap_socket(request, server_side=True)
            self.RequestHandlerClass(conn, client_address, self)
        except OSError as exc:  # resets, failed TLS handshakes, timeouts: the peer's business
            logger.debug("judge connection from %s ended: %s", client_address[0], exc)
        finally:
            with self._live_lock:
                self._live.discard(fd)
            if conn is not request:
                conn.close()  # wrap_socket detached `request`; the TLS socket owns the descriptor

    def handle_error(self, request, client_address) -> None:
        logger.exception("judge failed on a connection from %s", client_address[0])

    def close_connections(self) -> None:
        """Wake every handler thread (blocked reading a keep-alive connection) so it exits."""
        with self._live_lock:  # held throughout: no descriptor in _live can be closed and reused meanwhile
            self._closing = True
            for fd in self._live:
                try:
                    # shutdown() on a duplicate acts on the connection itself without touching the
                    # socket object (or TLS state) the handler thread is using.
                    with socket.socket(fileno=os.dup(fd)) as dup:
                        dup.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Judge:
    """A judge running in daemon threads; ``with Judge(options) as judge: judge.http_url``."""

    def __init__(self, options: JudgeOptions = JudgeOptions()) -> None:
        self.options = options
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> Judge:
        if self._servers:
            raise RuntimeError("this judge is already running")
        try:
            self._servers.append(_Server(self.options.listen, self.options, None))
            if self.options.tls_listen is not None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(self.options.cert_file, self.options.key_file)
                ctx.set_alpn_protocols(["http/1.1"])
                self._servers.append(_Server(self.options.tls_listen, self.options, ctx))
        except BaseException:
            self._close()
            raise
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"judge-{server.scheme}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
        for thread in self._threads:
            thread.join()
        self._close()

    def _close(self) -> None:
        for server in self._servers:
            server.close_connections()
            server.server_close()
        self._servers, self._threads = [], []

    def __enter__(self) -> Judge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _server(self, scheme: str) -> _Server:
        for server in self._servers:
            if server.scheme == scheme:
                return server
        if not self._servers:
            raise RuntimeError("the judge is not running: call start() first")
        raise RuntimeError("this judge has no HTTPS listener: set tls_listen, cert_file and key_file")

    @property
    def http_url(self) -> str:
        return "http://" + self._server("http").url_host

    @property
    def https_url(self) -> str:
        return "https://" + self._server("https").url_host


def serve_forever(options: JudgeOptions) -> None:
    """Run a judge until SIGTERM or SIGINT (used by ``proxycheck judge``)."""
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        with Judge(options) as judge:
            logger.info("judge listening on %s", judge.http_url)
            if options.tls_listen is not None:
                logger.info("judge listening on %s", judge.https_url)
            while not stop.wait(0.5):
                pass
            logger.info("judge stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
