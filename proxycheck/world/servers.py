"""The world's own misbehaving proxies: small servers on loopback, one misbehaviour each.

``proxycheck demo`` stages its whole fleet with them; the test world (tests/world) uses the
port-level faults (``RefusedPort``, ``SynDropPort``) and adds real proxy software.

Rules:
1. One generic HTTP forward proxy (absolute-form requests forwarded, CONNECT tunnelled) whose
   misbehaviours are flags (``Behaviour``); the three that never speak HTTP — a refused port, a
   blackhole, a silent listener — are their own small classes. All share async ``start()``/
   ``stop()``; the two port-level faults also open and close synchronously (``open()``/``close()``)
   for worlds without an event loop.
2. A proxy listens on its own loopback address and leaves from another one (``egress``), so the
   judge sees the proxy's exit address, never the checker's 127.0.0.1 — that is how the judge
   can ban one proxy and how a leaked client address stands out.
3. The decisions are pure (``parse_head``, ``refusal``, ``upstream_request``, ``blocked_reply``):
   bytes and flags in, bytes out. The servers around them only move bytes.
4. Never an open proxy: requests and tunnels go to loopback addresses only (403 otherwise).
5. ``stop()`` closes every socket and task the server made; nothing outlives the demo.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .procs import WorldError

HEAD_LIMIT = 65536
UPSTREAM_CONNECT_TIMEOUT = 5.0
VIA = "1.1 proxycheck-demo"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te",
               "trailer", "transfer-encoding", "upgrade"}


@dataclass(frozen=True)
class Behaviour:
    """What the generic proxy does wrong; the default is an honest, elite proxy."""

    via: bool = False  # adds "Via: 1.1 proxycheck-demo": anonymous, not elite
    leak_client_ip: bool = False  # adds "X-Forwarded-For: <client address>": transparent (29)
    block_images: bool = False  # answers 403 instead of an image/* reply on plain HTTP (35)
    reject_connect: bool = False  # answers 403 to CONNECT (36)
    max_request_line: int | None = None  # answers 414 to longer request lines (36)
    credentials: tuple[str, str] | None = None  # demands this login, 407 otherwise (49)


# --- the pure part -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    line_length: int  # of the request line, without CRLF

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


def parse_head(raw: bytes) -> RequestHead:
    """A request head (up to and including the blank line); ValueError when it is not HTTP/1.x."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"malformed header line: {line[:80]!r}")
        headers.append((name.strip(), value.strip()))
    return RequestHead(parts[0].upper(), parts[1], parts[2], tuple(headers), len(lines[0]))


def reply(status: int, phrase: str, body: str = "", headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete response that closes the connection."""
    data = body.encode()
    lines = [f"HTTP/1.1 {status} {phrase}", "Server: proxycheck-demo", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(data)}", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def connect_target(target: str) -> tuple[str, int] | None:
    """``host:port`` of a CONNECT request, or None when malformed."""
    host, colon, port = target.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def refusal(head: RequestHead, behaviour: Behaviour) -> bytes | None:
    """The answer that ends this request before anything is forwarded, or None to go on."""
    if behaviour.max_request_line is not None and head.line_length > behaviour.max_request_line:
        return reply(414, "Request-URI Too Long", f"request line longer than {behaviour.max_request_line} bytes\n")
    if behaviour.credentials is not None:
        user, password = behaviour.credentials
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if head.header("Proxy-Authorization") != expected:
            return reply(407, "Proxy Authentication Required", "login required\n",
                         (("Proxy-Authenticate", 'Basic realm="proxycheck demo"'),))
    if head.method == "CONNECT":
        if behaviour.reject_connect:
            return reply(403, "Forbidden", "CONNECT is not allowed here\n")
        where = connect_target(head.target)
        if where is None:
            return reply(400, "Bad Request", "CONNECT wants host:port\n")
        host = where[0]
    else:
        url = urlsplit(head.target)
        if url.scheme != "http" or not url.hostname:
            return reply(400, "Bad Request", "this proxy forwards absolute http:// URLs only\n")
        host = url.hostname
    if not _loopback(host):
        return reply(403, "Forbidden", "the proxycheck demo proxies reach loopback addresses only\n")
    return None


def upstream_request(head: RequestHead, behaviour: Behaviour, client_ip: str) -> tuple[str, int, bytes]:
    """Where to send a forwarded (non-CONNECT) request, and the request in origin-form."""
    url = urlsplit(head.target)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    lines = [f"{head.method} {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in head.headers if k.lower() not in _HOP_BY_HOP]
    if behaviour.via:
        lines.append(f"Via: {VIA}")
    if behaviour.leak_client_ip:
        lines.append(f"X-Forwarded-For: {client_ip}")
    lines.append("Connection: close")
    return url.hostname or "", url.port or 80, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def blocked_reply(response_head: bytes, behaviour: Behaviour) -> bytes | None:
    """What the client gets instead of this upstream response, or None to pass it on."""
    if not behaviour.block_images:
        return None
    for line in response_head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type" and value.strip().lower().startswith("image/"):
            return reply(403, "Forbidden", "images are blocked by this proxy's policy\n")
    return None


def client_response_head(response_head: bytes) -> bytes:
    """The upstream response head with our connection handling (one request per connection)."""
    lines = response_head.decode("latin-1").split("\r\n")
    kept = [lines[0]] + [ln for ln in lines[1:] if ln and ln.partition(":")[0].strip().lower() not in ("connection", "keep-alive")]
    return ("\r\n".join(kept + ["Connection: close"]) + "\r\n\r\n").encode("latin-1")


# --- the I/O shell -----------------------------------------------------------------------------


def _bind_error(host: str, exc: OSError) -> WorldError:
    if exc.errno == errno.EADDRNOTAVAIL:
        return WorldError(
            f"cannot use the loopback address {host}: the loopback world needs all of 127.0.0.0/8 on the loopback "
            f"interface (Linux has it; on macOS first run `sudo ifconfig lo0 alias {host} up`)")
    return WorldError(f"cannot listen on {host}: {exc.strerror or exc}")


class _AsyncServer:
    """An asyncio listener on ``host`` (port 0) that tracks its connections so stop() ends them."""

    def __init__(self, host: str) -> None:
        self.host, self.port = host, 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._connected, self.host, 0, backlog=256)
        except OSError as exc:
            raise _bind_error(self.host, exc) from None
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self.serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away, or sent garbage: either way this connection is over
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _track(self, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)

    def _untrack(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None


class ForwardProxy(_AsyncServer):
    """The generic HTTP proxy: absolute-form requests forwarded, CONNECT tunnelled, from ``egress``."""

    def __init__(self, host: str, egress: str, behaviour: Behaviour = Behaviour()) -> None:
        super().__init__(host)
        self.egress = egress
        self.behaviour = behaviour

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            writer.write(reply(431, "Request Header Fields Too Large"))
            await writer.drain()
            return
        try:
            head = parse_head(raw)
        except ValueError as exc:
            writer.write(reply(400, "Bad Request", f"{exc}\n"))
            await writer.drain()
            return
        answer = refusal(head, self.behaviour)
        if answer is not None:
            writer.write(answer)
            await writer.drain()
            return
        if head.method == "CONNECT":
            await self._tunnel(head, reader, writer)
        else:
            client_ip = writer.get_extra_info("peername")[0]
            await self._forward(head, client_ip, reader, writer)

    async def _open_upstream(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT):
                up_reader, up_writer = await asyncio.open_connection(host, port, local_addr=(self.egress, 0), limit=HEAD_LIMIT)
        except (OSError, TimeoutError):
            return None
        self._track(up_writer)
        return up_reader, up_writer

    async def _close_upstream(self, up_writer: asyncio.StreamWriter) -> None:
        self._untrack(up_writer)
        up_writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await up_writer.wait_closed()

    async def _forward(self, head: RequestHead, client_ip: str, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        host, port, request = upstream_request(head, self.behaviour, client_ip)
        length = int(head.header("Content-Length") or 0)
        body = await reader.readexactly(length) if length else b""
        upstream = await self._open_upstream(host, port)
        if upstream is None:
            writer.write(reply(502, "Bad Gateway", f"cannot connect to {host}:{port}\n"))
            await writer.drain()
            return
        up_reader, up_writer = upstream
        try:
            up_writer.write(request + body)
            await up_writer.drain()
            response_head = await up_reader.readuntil(b"\r\n\r\n")
            blocked = blocked_reply(response_head, self.behaviour)
            if blocked is not None:
                writer.write(blocked)
                await writer.drain()
                return
            writer.write(client_response_head(response_head))
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            await self._close_upstream(up_writer)

    async def _tunnel(self, head: RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        where = connect_target(head.target)
        assert where is not None  # refusal() answered malformed targets
        upstream = await self._open_upstream(*where)
        if upstream is None:
            writer.write(reply(502, "Bad Gateway", f"cannot connect to {head.target}\n"))
            await writer.drain()
            return
        up_reader, up_writer = upstream
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            await self._close_upstream(up_writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close, so a TLS close_notify and the FIN both get through."""
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()


class SilentListener(_AsyncServer):
    """Accepts connections and reads what comes, never answering: a read timeout (27)."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass


class RefusedPort:
    """A port bound but never listening, so the kernel answers every SYN with a reset (25).

    The socket holds the port, so nothing else can take it; real software cannot "listen and refuse".
    """

    def __init__(self, host: str) -> None:
        self.host, self.port = host, 0
        self._sock: socket.socket | None = None

    def open(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.bind((self.host, 0))
        except OSError as exc:
            self._sock.close()
            self._sock = None
            raise _bind_error(self.host, exc) from None
        self.port = self._sock.getsockname()[1]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def start(self) -> None:
        self.open()

    async def stop(self) -> None:
        self.close()


class SynDropPort:
    """A port where a TCP connect never completes (26), without root or a firewall.

    Loopback never drops packets on its own, but Linux drops a SYN when the listener's accept
    queue is full: listen with backlog 0, fill the queue with connections that are never
    accepted, and prove on opening that one more connect times out.
    """

    def __init__(self, host: str) -> None:
        self.host, self.port = host, 0
        self._sock: socket.socket | None = None
        self._fillers: list[socket.socket] = []

    def open(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.bind((self.host, 0))
        except OSError as exc:
            self.close()
            raise _bind_error(self.host, exc) from None
        self._sock.listen(0)
        self.port = self._sock.getsockname()[1]
        for _ in range(8):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.2)
            try:
                probe.connect((self.host, self.port))
            except TimeoutError:
                probe.close()  # the queue is full: further SYNs are dropped
                return
            except OSError:
                probe.close()
                self.close()
                raise
            self._fillers.append(probe)
        self.close()
        raise WorldError(
            f"blackhole on {self.host}: 8 connects into a backlog-0 listener all succeeded; this kernel does not "
            "drop SYNs on a full accept queue, so a connect-timeout (26) port cannot be staged here")

    def close(self) -> None:
        for sock in self._fillers:
            sock.close()
        self._fillers = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Blackhole(SynDropPort):
    """``SynDropPort`` with async ``start``/``stop``, like the other servers here."""

    async def start(self) -> None:
        await asyncio.to_thread(self.open)

    async def stop(self) -> None:
        self.close()
