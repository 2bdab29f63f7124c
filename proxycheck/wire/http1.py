"""HTTP/1.1 on one connection: our request out, one response in, framed by httptools (llhttp).

Rules:
1. The parser frames; we never split a status line, a header or a chunk by hand. The one rule
   llhttp leaves to its caller (it has no public "finish"): at EOF, a response with neither
   Content-Length nor chunked Transfer-Encoding ends there (RFC 9112 §6.3, rule 8); any other
   EOF before the end is a short body.
2. A CONNECT answer is read up to its blank line (``readuntil``), never further, because the bytes
   after it belong to the tunnel; the head is then parsed by httptools like any other.
3. The request is the bytes httpx sent before this module existed (same headers, same order), so
   proxies see what they saw before and the bench's byte counts stay equal.
4. Reading a response leaves no reference cycle behind (the parser holds the collector's bound
   methods, and the collector the parser, only while the read runs): refcounting frees each
   response's objects at once, and the cyclic collector is left with next to nothing to find
   (daemon/gc_policy.py; tests/test_no_cyclic_garbage.py).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import httptools

from .errors import BadResponse, ConnectionClosed

READ_SIZE = 65536
HEAD_LIMIT = 65536  # as asyncio's StreamReader limit, which bounds a CONNECT answer's head
BODY_LIMIT = 16 * 2**20  # when the caller sets no limit (only the images probe does)


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case name -> value (repeated headers joined by ", ")
    body: bytes = b""
    http_version: str = "1.1"
    complete: bool = True  # False: the connection closed before the body's end (``partial=True`` only)
    truncated: bool = False  # True: the body passed the caller's limit and we stopped reading
    keep_alive: bool = True
    tls_version: str | None = None
    tls_resumed: bool = False  # the TLS handshake resumed an earlier session (transport.py rule 2)

    @property
    def status_code(self) -> int:  # httpx's name, which the probes' wording grew up with
        return self.status

    @property
    def reason_phrase(self) -> str:
        return self.reason

    def text(self) -> str:
        """The body as text, undoing gzip/deflate (we send Accept-Encoding as httpx did)."""
        body = self.body
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "deflate") and body:
            try:
                body = zlib.decompress(body, 47 if encoding == "gzip" else 15)
            except zlib.error:
                try:
                    body = zlib.decompress(body, -15)
                except zlib.error as exc:
                    raise BadResponse(f"sent a {encoding} body that does not decompress ({exc})", phase="body") from exc
        return body.decode("utf-8", "replace")


def request_bytes(target: str, host: str, user_agent: str, proxy_auth: str | None) -> bytes:
    auth = f"Proxy-Authorization: {proxy_auth}\r\n" if proxy_auth else ""
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
        f"Connection: keep-alive\r\nUser-Agent: {user_agent}\r\n{auth}\r\n"
    ).encode("latin-1")


def connect_bytes(origin: str, proxy_auth: str | None) -> bytes:
    auth = f"Proxy-Authorization: {proxy_auth}\r\n" if proxy_auth else ""
    return f"CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\nAccept: */*\r\n{auth}\r\n".encode("latin-1")


class _Collector:
    """httptools callbacks: status, headers, body chunks, and where the message ended."""

    __slots__ = ("reason", "headers", "chunks", "size", "head_done", "done", "limit", "over", "parser", "keep_alive",
                 "status", "head_size")

    def __init__(self, limit: int | None) -> None:
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.head_done = False
        self.done = False
        self.limit = limit
        self.over = False
        self.parser: httptools.HttpResponseParser | None = None
        self.keep_alive = False
        self.status = 0
        self.head_size = 0

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.head_done = True
        if self.parser is not None:
            self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.limit is not None and self.size > self.limit:
            self.over = True
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self.reason, self.headers, self.head_done, self.status = "", {}, False, 0
            return
        self.done = True
        # llhttp resets its state once the message is done: ask now, not after feed_data returns.
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()


def _close_delimited(headers: dict[str, str]) -> bool:
    return "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()


class ResponseReader:
    """Reads one response from ``reader``. ``phase`` tells a caller's deadline which phase it is in;
    ``received`` how many bytes of the answer arrived (a retry is allowed only at 0).

    Bounds: a head over ``HEAD_LIMIT`` bytes is a ``BadResponse``; a body over ``limit`` stops
    the read (``truncated``), and with no ``limit`` given, a body over ``BODY_LIMIT`` is a
    ``BadResponse``: no answer can make the checker hold more than that in memory."""

    def __init__(self, reader: asyncio.StreamReader, *, limit: int | None = None, partial: bool = False) -> None:
        self.reader = reader
        self.limit = limit
        self.partial = partial
        self.phase = "response_head"
        self.received = 0  # bytes of the answer so far: 0 after a failure means "closed before answering"

    async def read(self, on_bytes: Callable[[bool], None]) -> Response:
        """Read the response; ``on_bytes(first)`` is called for every chunk that arrives (the
        caller moves its deadline: time to first byte, then each read of the transfer)."""
        col = _Collector(self.limit if self.limit is not None else BODY_LIMIT)
        col.parser = parser = httptools.HttpResponseParser(col)
        try:
            return await self._read(col, parser, on_bytes)
        finally:
            col.parser = None  # rule 4: the parser holds the collector's methods; no cycle outlives a read

    async def _read(self, col: _Collector, parser: httptools.HttpResponseParser,
                    on_bytes: Callable[[bool], None]) -> Response:
        reader = self.reader
        received = 0
        while not col.done:
            data = await reader.read(READ_SIZE)
            if not data:
                if col.head_done and _close_delimited(col.headers):
                    break
                if not col.head_done:
                    what = "closed the connection without answering" if not received else \
                        "closed the connection in the middle of the response head"
                    raise ConnectionClosed(what, phase="response_head")
                if self.partial:
                    return self._response(parser, col, complete=False)
                raise ConnectionClosed(f"closed the connection after {col.size:,} bytes of the body", phase="body")
            on_bytes(not received)
            received += len(data)
            self.received = received
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                raise BadResponse("answered a GET with a protocol upgrade", phase="response_head") from None
            except httptools.HttpParserError as exc:
                phase = "body" if col.head_done else "response_head"
                raise BadResponse(f"answered with invalid HTTP ({exc})", phase=phase) from exc
            if col.head_size > HEAD_LIMIT or (not col.head_done and received > HEAD_LIMIT):
                raise BadResponse(f"sent a response head over {HEAD_LIMIT // 1024} KiB", phase="response_head")
            if col.head_done:
                self.phase = "body"
            if col.over:
                if self.limit is None:
                    raise BadResponse(f"sent a body over {BODY_LIMIT // 2**20} MiB", phase="body")
                return self._response(parser, col, truncated=True)
        return self._response(parser, col)

    @staticmethod
    def _response(parser, col: _Collector, *, complete: bool = True, truncated: bool = False) -> Response:
        keep_alive = col.done and col.keep_alive and not truncated
        return Response(col.status, col.reason, col.headers, b"".join(col.chunks),
                        parser.get_http_version(), complete=complete, truncated=truncated, keep_alive=keep_alive)


async def read_connect_answer(reader: asyncio.StreamReader) -> Response:
    """The proxy's answer to CONNECT: its head only (rule 2). Raises ConnectionClosed / BadResponse
    in the ``proxy_handshake`` phase."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosed("closed the connection without answering CONNECT" if not exc.partial else
                               "closed the connection in the middle of its answer to CONNECT", phase="proxy_handshake") from None
    except asyncio.LimitOverrunError:
        raise BadResponse("answered CONNECT with a head over 64 KiB", phase="proxy_handshake") from None
    col = _Collector(0)
    parser = httptools.HttpResponseParser(col)
    try:
        parser.feed_data(head)
    except httptools.HttpParserError as exc:
        raise BadResponse(f"answered CONNECT with invalid HTTP ({exc})", phase="proxy_handshake") from exc
    if not col.head_done:
        raise BadResponse("answered CONNECT with an incomplete head", phase="proxy_handshake")
    return Response(parser.get_status_code(), col.reason, col.headers, b"", parser.get_http_version())
