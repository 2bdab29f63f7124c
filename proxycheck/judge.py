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
6. Endpoints are pure functions ``(request, options) -> answer`` listed in ``ROUTES``
   (judge_routes.py), plus the ones probes declare for their own targets (``TargetSpec.serve``,
   read from the registry when the judge starts: ``probe_routes()``); the socket handling
   around them (this module) is the only I/O.

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

import ipaddress
import logging
import os
import signal
import socket
import socketserver
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import probes
from .judge_routes import (  # noqa: F401 - the judge's public names, re-exported
    BAN_MODES,
    IMAGE_PNG,
    PRESET_ROUTES,
    ROUTES,
    UNUSUAL_TRAFFIC,
    Answer,
    JudgeOptions,
    Request,
    Route,
    _json,
    _normal_ip,
    answer,
    make_png,
    refusal,
)

logger = logging.getLogger("proxycheck.judge")

SERVER_NAME = "proxycheck-judge"
_TLS_HANDSHAKE_TIMEOUT = 10.0


def probe_routes() -> dict[str, Route]:
    """Every endpoint a registered probe declares for its targets (rule 6); a path the judge
    serves already is a conflict, refused here."""
    routes: dict[str, Route] = {}
    for spec in probes.REGISTRY:
        for target in spec.targets:
            for path, endpoint in target.serve:
                if path in ROUTES or path in routes:
                    raise ValueError(f"probe {spec.name}: [targets].{target.key} serves {path}, which the judge already serves")
                routes[path] = endpoint
    return routes


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
            return answer(req, options, self.server.probe_routes)
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
        self.probe_routes = probe_routes()  # the registry as it is when the judge starts
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
