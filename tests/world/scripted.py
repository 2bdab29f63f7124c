"""A scripted proxy for the wire tests: an honest HTTP/SOCKS5 relay whose every step can misbehave.

Real software cannot be told "answer CONNECT with HTTP/1.0", "send the head a few bytes at a
time" or "cut the image short", so each case in tests/test_wire_faults.py gives this server a
``Script``: hooks for the step it breaks, honest relaying for every other step. It runs in the
test's own event loop (``async with ScriptedProxy(...)``) and counts the connections it accepted.
``CountingRelay`` counts them in front of real proxy software, which logs requests, not
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


@dataclass
class Script:
    """Each hook replaces one honest step; None keeps it honest."""

    socks5: bool = False
    # HTTP proxy: how to answer CONNECT (the status line and headers, CRLF CRLF included);
    # None: close without answering.
    connect_answer: bytes | None = b"HTTP/1.1 200 Connection established\r\n\r\n"
    after_connect: Callable[[Reader, Writer], Awaitable[bool]] | None = None  # return False: stop
    # Forwarded GETs: (origin's raw response) -> bytes to send, or a coroutine that sends them.
    response: Callable[[bytes, Writer], Awaitable[None]] | None = None
    close_after_each: bool = False
    # Keep-alive that ends under the client: answer this many forwarded GETs on a connection (no
    # "Connection: close"), then read the next request and close without a byte of answer, as
    # tinyproxy or a keep-alive timeout does when the close crosses the client's next request.
    close_unanswered_after: int | None = None
    # Reset (RST) every connection as soon as it is accepted, before reading a byte.
    reset_on_accept: bool = False
    # Close the first connection accepted without a byte of answer, as an idle or accept-time
    # limit does with a connection that has carried no request (a check's spare: wire/session.py
    # rule 1): "accept", right after accepting it; "request", the moment a request's first byte
    # arrives (the rest unread, so the close is a reset): the close crossing the request.
    close_first: str | None = None
    # SOCKS5: the two-byte answer to the greeting; None: close.
    socks5_greeting_reply: bytes | None = b"\x05\x00"
    socks5_connect_reply: bytes = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00"


class _Listener:
    """What both servers here share: a listener on ``host`` (a port of the kernel's choosing),
    the count of connections accepted, and an exit that ends every connection they hold."""

    def __init__(self, host: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.ssl_context = host, 0, ssl_context
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[Writer] = set()

    async def _accept(self, reader: Reader, writer: Writer) -> None:
        raise NotImplementedError

    async def __aenter__(self):  # noqa: ANN204 - returns the subclass
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Abort every connection (ours and upstream) rather than cancel the handlers: each ends
        # on its own, and asyncio has no cancelled handler task to complain about.
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self._server.wait_closed()


class ScriptedProxy(_Listener):
    def __init__(self, host: str, egress: str, script: Script, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, ssl_context)  # ssl_context set: an https:// proxy (TLS to the proxy itself)
        self.script, self.egress = script, egress
        self.unanswered = 0  # requests closed unanswered by ``close_unanswered_after``

    async def _accept(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        first = self.connections == 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            if first and self.script.close_first is not None:
                if self.script.close_first == "request" and await reader.read(1):
                    self.unanswered += 1
                return
            if self.script.reset_on_accept:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                return
            if self.script.socks5:
                await self._socks5(reader, writer)
            else:
                await self._http(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def _http(self, reader: Reader, writer: Writer) -> None:
        answered = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT" and answered == self.script.close_unanswered_after:
                self.unanswered += 1
                return
            answered += 1
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                if self.script.connect_answer is None:
                    return
                writer.write(self.script.connect_answer)
                if not self.script.connect_answer.split(b" ", 2)[1].startswith(b"2"):
                    return
                if self.script.after_connect is not None and not await self.script.after_connect(reader, writer):
                    return
                await self._relay(reader, writer, host, int(port))
                return
            url = urlsplit(target)
            lines = head.decode("latin-1").split("\r\n")
            kept = [ln for ln in lines[1:] if ln and not ln.lower().startswith(("proxy-", "connection:"))]
            request = f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1\r\n" + \
                "\r\n".join(kept) + "\r\nConnection: close\r\n\r\n"
            raw = await _fetch(url.hostname or "", url.port or 80, request.encode("latin-1"), self.egress)
            head, _, body = raw.partition(b"\r\n\r\n")  # our upstream hop closes; the client's need not
            kept_head = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
            if self.script.close_after_each:
                kept_head.append(b"Connection: close")
            raw = b"\r\n".join(kept_head) + b"\r\n\r\n" + body
            if self.script.response is not None:
                await self.script.response(raw, writer)
            else:
                writer.write(raw)
            await writer.drain()
            if self.script.close_after_each:
                return

    async def _relay(self, reader: Reader, writer: Writer, host: str, port: int) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, port, local_addr=(self.egress, 0))
        self._writers.add(up_writer)

        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()

    async def _socks5(self, reader: Reader, writer: Writer) -> None:
        greeting = await reader.readexactly(2)
        await reader.readexactly(greeting[1])
        if self.script.socks5_greeting_reply is None:
            return
        writer.write(self.script.socks5_greeting_reply)
        if self.script.socks5_greeting_reply != b"\x05\x00":
            await asyncio.sleep(0.2)  # let the client read it before the close
            return
        request = await reader.readexactly(4)
        if request[3] == 1:
            host = ".".join(str(b) for b in await reader.readexactly(4))
        else:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        writer.write(self.script.socks5_connect_reply)
        if self.script.socks5_connect_reply[1] != 0:
            await asyncio.sleep(0.2)
            return
        await self._relay(reader, writer, host, port)


class CountingRelay(_Listener):
    """A TCP relay on ``host`` to ``upstream`` (real proxy software) that counts the connections
    it accepted: one upstream connection for each, bytes copied both ways until either side ends."""

    def __init__(self, host: str, upstream: tuple[str, int]) -> None:
        super().__init__(host)
        self.upstream = upstream

    async def _accept(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: Writer | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except OSError:
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()


async def _pipe(src: Reader, dst: Writer) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends, then end ``dst`` too, as a proxy does."""
    with contextlib.suppress(OSError):
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    dst.transport.abort()


async def _fetch(host: str, port: int, request: bytes, egress: str) -> bytes:
    """One request to the origin, the whole raw response (the origin closes: Connection: close)."""
    up_reader, up_writer = await asyncio.open_connection(host, port, local_addr=(egress, 0))
    try:
        up_writer.write(request)
        return await up_reader.read(-1)
    finally:
        up_writer.close()


# -- response rewriters ------------------------------------------------------------------------


def split_head(size: int, pause: float = 0.002) -> Callable[[bytes, Writer], Awaitable[None]]:
    """Send the response head ``size`` bytes at a time, each in its own TCP segment."""

    async def send(raw: bytes, writer: Writer) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        head += b"\r\n\r\n"
        for i in range(0, len(head), size):
            writer.write(head[i:i + size])
            await writer.drain()
            await asyncio.sleep(pause)
        writer.write(body)

    return send


async def chunked(raw: bytes, writer: Writer) -> None:
    """Re-frame the body as chunked transfer coding (no Content-Length), in 1000-byte chunks."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"content-length:")]
    out = b"\r\n".join(lines) + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i in range(0, len(body), 1000):
        part = body[i:i + 1000]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    writer.write(out + b"0\r\n\r\n")


async def interim_first(raw: bytes, writer: Writer) -> None:
    """Send a 100 Continue before the real answer (allowed before any final response)."""
    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + raw)


def cut_body(keep: int) -> Callable[[bytes, Writer], Awaitable[None]]:
    """Send the head (with its true Content-Length) and only ``keep`` bytes of the body, then close."""

    async def send(raw: bytes, writer: Writer) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n" + body[:keep])
        await writer.drain()
        raise ConnectionResetError  # ends the connection (the server's handler aborts it)

    return send


def replace_with(data: bytes | None) -> Callable[[bytes, Writer], Awaitable[None]]:
    """Answer with ``data`` instead (None: nothing, close)."""

    async def send(raw: bytes, writer: Writer) -> None:
        if data is not None:
            writer.write(data)
            await writer.drain()
        raise ConnectionResetError

    return send


async def silence(raw: bytes, writer: Writer) -> None:
    """Never answer: wait until the connection is aborted."""
    while not writer.is_closing():
        await asyncio.sleep(0.05)
    raise ConnectionResetError


def only_for(content_type: str, hook: Callable[[bytes, Writer], Awaitable[None]]) -> Callable[[bytes, Writer], Awaitable[None]]:
    """Apply ``hook`` to responses of that Content-Type (say ``image/``); others pass untouched."""

    async def send(raw: bytes, writer: Writer) -> None:
        if f"content-type: {content_type}".encode() in raw.split(b"\r\n\r\n", 1)[0].lower():
            await hook(raw, writer)
        else:
            writer.write(raw)

    return send


def nth(n: int, hook: Callable[[bytes, Writer], Awaitable[None]]) -> Callable[[bytes, Writer], Awaitable[None]]:
    """Apply ``hook`` to the ``n``-th forwarded response only (counted over the whole proxy, from 1)."""
    seen = 0

    async def send(raw: bytes, writer: Writer) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            await hook(raw, writer)
        else:
            writer.write(raw)

    return send


async def garbage_after_connect(reader: Reader, writer: Writer) -> bool:
    """After 200 to CONNECT, answer the TLS ClientHello with plain HTTP: the TLS handshake fails."""
    await reader.read(65536)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    return False
