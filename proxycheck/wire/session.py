"""One proxy check's connections: GET through a proxy (or directly), timed by phase, under deadlines.

Rules:
1. Connections are keyed by origin, as httpcore keyed them: one keep-alive connection per plain
   origin, one tunnel (one TLS handshake) per HTTPS origin, for the whole check. A response that
   says ``close``, was cut short or was too long retires its connection; the next request to that
   origin opens a new one. Nothing is shared between sessions, and a session serves one request
   at a time. Through an ``http://`` proxy, ``tcp_check`` keeps the connection it opened as the
   *spare*, a connection that has carried no request: the session's first request, if it is a
   plain-HTTP one (forwarded: a new connection would be the TCP connect and nothing more), goes
   out on it; any other first request (a CONNECT), or ``close()``, closes it. Through SOCKS or an
   ``https://`` proxy every connection starts with a handshake, which is never retried (rule 6),
   so there ``tcp_check`` closes its connection at once.
2. Every phase has a deadline: ``[timeouts].connect`` for the TCP connect, ``[timeouts].read``
   for each other phase (proxy handshake, TLS, request and response head) and for each read of
   the body (as httpx's read timeout). One ``asyncio.timeout`` per request is rescheduled as the
   phases pass.
3. Errors leave as ``wire.errors`` classes only, typed by phase. Through an HTTP proxy a 407 is
   the proxy's (RFC 9110 §15.5.8), so it is raised as ``ProxyAuthFailed`` here, for every request.
4. ``timings`` adds up each phase's milliseconds (connect, proxy_handshake, tls, ttfb, transfer)
   since the caller last replaced it: the probe runner gives each probe a fresh dict. A request
   on the spare has no connect phase (tcp_check's probe timed it); once it is answered, that
   connect's milliseconds are in ``spare_connect_ms`` (the runner resets it with ``timings``),
   so that ``latency_ms`` still counts one connect (probes/base.py).
5. TLS is ``ssl`` with the process's one context; for an ``https://`` proxy the tunnel's TLS runs
   inside the proxy's (``start_tls`` on a TLS transport: TLS-in-TLS). When the context resumes
   sessions (``transport.ResumingContext``), the first answer read on a TLS connection hands the
   context that connection's session, for the next handshake with the same server.
6. A kept-alive connection may be closed by the other side at any moment, and the close can cross
   our next request on the wire (tinyproxy drops the upstream's ``Connection: close`` and then
   closes; a keep-alive timeout can end just as we write). So a GET sent on a *reused* connection
   that ends (EOF or reset) before any byte of the answer arrived is sent once more on a new
   connection, as RFC 9110 §9.2.2 allows for an idempotent request and as browsers and urllib3
   do for a connection taken from the pool; through a tunnel the new connection is a new CONNECT.
   Only what happens on a fresh connection counts. Never retried: a request on a connection opened
   for it, an answer of which any byte arrived, a timeout (the proxy may still be working), and
   any second attempt. A CONNECT is always the first request on its connection (rule 1), so it
   is never sent on a reused one. The spare counts as *reused*, not fresh: it was opened before
   the request and sat idle, and a proxy may close such a connection (an idle or accept-time
   limit) just as our request reaches it.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import socket
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from ..errors import SourceAddressUnavailable
from ..proxy import Proxy
from . import http1
from .errors import (
    ConnectionClosed,
    ConnectRefused,
    ConnectTimeout,
    ConnectUnreachable,
    HandshakeTimeout,
    ProxyAuthFailed,
    ResponseTimeout,
    TLSFailed,
    TLSIntercepted,
    TunnelRefused,
    WireError,
)
from .http1 import Response
from .socks import socks4_connect, socks5_connect

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN}


@dataclass(frozen=True)
class Target:
    """A URL as the wire needs it."""

    scheme: str
    host: str
    port: int
    origin: str  # host:port, what CONNECT and SOCKS name
    host_header: str
    path: str  # origin-form: /path?query
    absolute: str  # absolute-form, for a forward proxy


@lru_cache(maxsize=256)
def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if port == default else f"{bracketed}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    absolute = f"{parts.scheme}://{host_header}{path}"
    return Target(parts.scheme, host, port, f"{bracketed}:{port}", host_header, path, absolute)


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float


class _Conn:
    __slots__ = ("reader", "writer", "tls_version", "tls_resumed", "new_session", "connect_ms")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.tls_version: str | None = None
        self.tls_resumed = False
        self.new_session: ssl.SSLObject | None = None  # a verified TLS connection whose session is not kept yet
        self.connect_ms = 0.0  # the spare's: how long tcp_check took to open it

    def reusable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        transport = self.writer.transport
        if self.tls_version is not None:
            transport.abort()  # no close_notify, as httpcore (standard_compatible=False): same bytes
        else:
            transport.close()


class _Unanswered(Exception):
    """A reused connection ended before any byte of the answer (rule 6): not an error of anyone's
    yet, and never seen outside ``Session``."""


class _Clock:
    """The current phase, its deadline and its start; adds each finished phase to ``timings``."""

    __slots__ = ("phase", "started", "timings", "cm", "loop")

    def __init__(self, timings: dict[str, float], cm: asyncio.Timeout, loop: asyncio.AbstractEventLoop) -> None:
        self.phase = ""
        self.started = 0.0
        self.timings = timings
        self.cm = cm
        self.loop = loop

    def enter(self, phase: str, seconds: float) -> None:
        self.stop()
        self.phase = phase
        self.started = time.perf_counter()
        self.cm.reschedule(self.loop.time() + seconds)

    def stop(self) -> None:
        if self.phase:
            ms = (time.perf_counter() - self.started) * 1000
            self.timings[self.phase] = self.timings.get(self.phase, 0.0) + ms


class Session:
    """GETs for one check. ``proxy=None``: direct, for the checker's self-test."""

    def __init__(self, proxy: Proxy | None, ssl_context: ssl.SSLContext, timeouts: Timeouts, user_agent: str,
                 source: str | None = None) -> None:
        self.proxy = proxy
        self.source = source  # the local address connections leave from (a vantage's: vantage.py); None: any
        self.ssl_context = ssl_context
        self.timeouts = timeouts
        self.user_agent = user_agent
        self.timings: dict[str, float] = {}
        self.spare_connect_ms = 0.0
        self._conns: dict[str, _Conn] = {}
        self._spare: _Conn | None = None
        self._auth: str | None = None
        if proxy is not None and proxy.username is not None and proxy.scheme in ("http", "https"):
            token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
            self._auth = f"Basic {token}"

    # -- the public calls ----------------------------------------------------------------------

    async def tcp_check(self) -> str:
        """Resolve the proxy's host and open a TCP connection to it: the connect probe. The
        connection is kept as the spare through an ``http://`` proxy, else closed (rule 1).
        Returns the IP connected to."""
        assert self.proxy is not None
        cm = asyncio.timeout(None)
        clock = _Clock(self.timings, cm, asyncio.get_running_loop())
        try:
            async with cm:
                clock.enter("connect", self.timeouts.connect)
                ip = await _resolve(self.proxy.host, self.proxy.port)
                conn = _Conn(*await _open(ip, self.proxy.port, self.source))
                if self.proxy.scheme != "http":
                    conn.close()
                    return ip
                conn.connect_ms = (time.perf_counter() - clock.started) * 1000
                self._drop_spare()
                self._spare = conn
                return ip
        except TimeoutError:
            if not cm.expired():
                raise
            raise ConnectTimeout(f"did not accept a TCP connection within {self.timeouts.connect:g} s") from None
        finally:
            clock.stop()

    async def get(self, url: str, *, limit: int | None = None, partial: bool = False) -> Response:
        """GET ``url``. ``limit``: stop after that many body bytes (``truncated``); ``partial``: an
        early EOF in the body gives ``complete=False`` instead of raising (for callers to whom a
        short body is data, not a broken connection)."""
        target = parse_target(url)
        cm = asyncio.timeout(None)
        clock = _Clock(self.timings, cm, asyncio.get_running_loop())
        try:
            async with cm:
                return await self._get(target, clock, limit, partial)
        except TimeoutError:
            if not cm.expired():
                raise
            raise _timeout(clock.phase, self.timeouts, target) from None
        finally:
            clock.stop()

    def holds(self, url: str) -> bool:
        """Whether a reusable connection to ``url``'s origin is open here: a caller fanning requests
        out over several sessions sends that origin's through this one (rule 1)."""
        target = parse_target(url)
        conn = self._conns.get(f"{target.scheme}://{target.origin}")
        return conn is not None and conn.reusable()

    def close(self) -> None:
        self._drop_spare()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- inside -------------------------------------------------------------------------------

    async def _get(self, target: Target, clock: _Clock, limit: int | None, partial: bool) -> Response:
        key = f"{target.scheme}://{target.origin}"
        conn = self._conns.get(key)
        if conn is not None and not conn.reusable():
            self._retire(key)
            conn = None
        spare, self._spare = self._spare, None
        if spare is not None:
            if conn is None and target.scheme == "http" and spare.reusable():  # rule 1: a forwarded request
                conn = self._conns[key] = spare
            else:
                spare.close()
        if conn is not None:
            try:
                response = await self._exchange(conn, key, target, clock, limit, partial, reused=True)
            except _Unanswered:
                pass  # rule 6: closed under our request before answering; once more on a new connection
            else:
                if conn is spare:
                    self.spare_connect_ms += conn.connect_ms  # rule 4
                return response
        conn = await self._open(target, clock)
        self._conns[key] = conn
        return await self._exchange(conn, key, target, clock, limit, partial, reused=False)

    async def _exchange(self, conn: _Conn, key: str, target: Target, clock: _Clock, limit: int | None, partial: bool,
                        *, reused: bool) -> Response:
        """One request and its answer on ``conn``. ``reused``: an EOF or reset before any byte of
        the answer raises ``_Unanswered`` (rule 6) instead of ``ConnectionClosed``."""
        forward = self.proxy is not None and self.proxy.scheme in ("http", "https") and target.scheme == "http"
        request = http1.request_bytes(target.absolute if forward else target.path, target.host_header, self.user_agent,
                                      self._auth if forward else None)
        read = self.timeouts.read
        clock.enter("ttfb", read)
        reader = http1.ResponseReader(conn.reader, limit=limit, partial=partial)

        loop = clock.loop

        def on_bytes(first: bool) -> None:  # rule 2: the transfer's deadline restarts with every read
            if first:
                clock.enter("transfer", read)
            else:
                clock.cm.reschedule(loop.time() + read)

        try:
            conn.writer.write(request)
            response = await reader.read(on_bytes)
        except WireError as exc:
            self._retire(key)
            if reused and reader.received == 0 and isinstance(exc, ConnectionClosed):
                raise _Unanswered from exc
            exc.target = target.origin
            raise
        except OSError as exc:
            self._retire(key)
            if reused and reader.received == 0:
                raise _Unanswered from exc
            raise ConnectionClosed(f"dropped the connection while talking to {target.origin} ({_strerror(exc)})",
                                   target=target.origin, phase=reader.phase) from exc
        except BaseException:
            self._retire(key)
            raise
        if conn.new_session is not None:  # rule 5: an answer was read, so the tickets have arrived
            keep = getattr(self.ssl_context, "keep_session", None)
            if keep is not None:
                keep(conn.new_session)
            conn.new_session = None
        if not response.keep_alive:
            self._retire(key)
        response.tls_version = conn.tls_version
        response.tls_resumed = conn.tls_resumed
        if forward and response.status == 407:
            raise ProxyAuthFailed(f"answered 407 {response.reason} to GET {target.host_header}", target=target.origin)
        return response

    def _drop_spare(self) -> None:
        if self._spare is not None:
            self._spare.close()
            self._spare = None

    def _retire(self, key: str) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()

    async def _open(self, target: Target, clock: _Clock) -> _Conn:
        proxy = self.proxy
        clock.enter("connect", self.timeouts.connect)
        if proxy is None:
            conn = _Conn(*await _open(target.host, target.port))
        else:
            conn = _Conn(*await _open(proxy.host, proxy.port, self.source))
        try:
            if proxy is not None:
                await self._through_proxy(conn, target, clock)
            if target.scheme == "https":
                clock.enter("tls", self.timeouts.read)
                await self._start_tls(conn, target.host, target.origin)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _through_proxy(self, conn: _Conn, target: Target, clock: _Clock) -> None:
        proxy = self.proxy
        assert proxy is not None
        read = self.timeouts.read
        scheme = proxy.scheme
        forward = scheme in ("http", "https") and target.scheme == "http"
        if scheme != "http" or not forward:
            clock.enter("proxy_handshake", read)
        if scheme == "https":
            await self._start_tls(conn, proxy.host, proxy.address, to_proxy=True)
        if scheme in ("http", "https"):
            if forward:
                return  # forward proxy: the request itself goes to the proxy
            try:
                conn.writer.write(http1.connect_bytes(target.origin, self._auth))
                answer = await http1.read_connect_answer(conn.reader)
            except OSError as exc:
                raise ConnectionClosed(f"dropped the connection during CONNECT {target.origin} ({_strerror(exc)})",
                                       target=target.origin, phase="proxy_handshake") from exc
            if answer.status == 407:
                raise ProxyAuthFailed(f"answered 407 {answer.reason} to CONNECT {target.origin}", target=target.origin)
            if not 200 <= answer.status < 300:
                raise TunnelRefused(f"answered {answer.status} {answer.reason} to CONNECT {target.origin}", target=target.origin)
            return
        try:
            if scheme in ("socks5", "socks5h"):
                await socks5_connect(conn.reader, conn.writer, target.host, target.port, username=proxy.username,
                                     password=proxy.password, remote_dns=scheme == "socks5h")
            else:
                await socks4_connect(conn.reader, conn.writer, target.host, target.port, user_id=proxy.username,
                                     remote_dns=scheme == "socks4a")
        except OSError as exc:
            raise ConnectionClosed(f"dropped the connection during the SOCKS handshake for {target.origin} ({_strerror(exc)})",
                                   target=target.origin, phase="proxy_handshake") from exc

    async def _start_tls(self, conn: _Conn, hostname: str, origin: str, *, to_proxy: bool = False) -> None:
        phase = "proxy_handshake" if to_proxy else "tls"
        whose = "its own certificate" if to_proxy else f"a certificate for {origin}"
        # A failed start_tls leaves its error in a cycle (its traceback holds uvloop's frames, which
        # hold the waiter that holds the error): the cause keeps its message, not its traceback, so
        # refcounting frees the connection at once (wire/http1.py rule 4).
        try:
            await conn.writer.start_tls(self.ssl_context, server_hostname=hostname)
        except ssl.SSLCertVerificationError as exc:
            # The proxy's own certificate is not an interception of anyone's: a failed handshake.
            kind = TLSFailed if to_proxy else TLSIntercepted
            raise kind(f"presented {whose} that does not verify ({exc.verify_message})", target=origin,
                       phase=phase) from exc.with_traceback(None)
        except ssl.SSLError as exc:
            what = "its own TLS handshake" if to_proxy else f"the TLS handshake with {origin}"
            raise TLSFailed(f"broke {what} ({exc.reason or exc})", target=origin, phase=phase) from exc.with_traceback(None)
        except (OSError, EOFError) as exc:
            raise ConnectionClosed(f"closed the connection during the TLS handshake with {origin}",
                                   target=origin, phase=phase) from exc.with_traceback(None)
        ssl_object = conn.writer.get_extra_info("ssl_object")
        conn.tls_version = ssl_object.version() if ssl_object is not None else "TLS"
        conn.tls_resumed = ssl_object is not None and ssl_object.session_reused
        conn.new_session = None if to_proxy else ssl_object


def _timeout(phase: str, t: Timeouts, target: Target) -> WireError:
    if phase == "connect":
        return ConnectTimeout(f"did not accept a TCP connection within {t.connect:g} s", target=target.origin)
    if phase == "proxy_handshake":
        return HandshakeTimeout(f"did not finish the CONNECT/SOCKS handshake for {target.origin} within {t.read:g} s",
                                target=target.origin)
    if phase == "tls":
        return ResponseTimeout(f"did not let the TLS handshake with {target.origin} finish within {t.read:g} s",
                               target=target.origin, phase="tls")
    body = phase == "transfer"
    return ResponseTimeout(f"accepted the connection but sent no answer to {target.origin} within {t.read:g} s" if not body
                           else f"stopped sending the answer from {target.origin} for {t.read:g} s",
                           target=target.origin, phase="body" if body else "response_head")


async def _resolve(host: str, port: int) -> str:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return host
    except OSError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectUnreachable(f"has a host name that does not resolve ({exc.strerror})") from exc
    return infos[0][4][0]


async def _open(host: str, port: int, source: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_connection(host, port, local_addr=None if source is None else (source, 0))
    except socket.gaierror as exc:
        raise ConnectUnreachable(f"has a host name that does not resolve ({exc.strerror})") from exc
    except ConnectionRefusedError as exc:
        raise ConnectRefused("refused the TCP connection (Connection refused)") from exc
    except OSError as exc:
        if source is not None and exc.errno == errno.EADDRNOTAVAIL:  # binding to the vantage's address: ours
            raise SourceAddressUnavailable(f"cannot connect from {source}: {_strerror(exc)} (check [check].source_address "
                                           "and [check].vantages)") from exc
        if exc.errno in _UNREACHABLE:
            raise ConnectUnreachable(f"is unreachable ({_strerror(exc)})") from exc
        raise ConnectRefused(f"could not be connected to ({_strerror(exc)})") from exc


def _strerror(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


__all__ = ["Response", "Session", "Target", "Timeouts", "parse_target"]
