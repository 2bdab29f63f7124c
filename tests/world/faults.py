"""Fault servers: the misbehaviours no real proxy software can be configured into on loopback.

The port-level ones (refused, blackhole) are the loopback world's (``proxycheck.world.servers``,
shared with the demo); the ones here that speak a protocol are threaded, because the test world
runs without an event loop of its own.

Each class has ``start()`` (binds port 0 on its own 127.0.1.N address, then sets ``port``) and
``stop()`` (closes every socket it opened and joins its threads, so nothing leaks into the
ResourceWarning check). Each docstring says what real software cannot do here.
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import trustme

from proxycheck.world import servers

_HEAD_LIMIT = 65536


class RefusedPort(servers.RefusedPort):
    """A port where TCP connects are refused (RST): code 25. The loopback world's
    ``RefusedPort`` (proxycheck/world/servers.py), with the test world's blocking start/stop."""

    def start(self) -> None:  # type: ignore[override]
        self.open()

    def stop(self) -> None:  # type: ignore[override]
        self.close()


class Blackhole(servers.SynDropPort):
    """A port whose SYNs go unanswered, so a TCP connect times out: code 26. The loopback world's
    ``SynDropPort`` (proxycheck/world/servers.py), with the test world's blocking start/stop."""

    def start(self) -> None:
        self.open()

    def stop(self) -> None:
        self.close()


class _ThreadedServer:
    """An accept loop plus one thread per connection; subclasses implement ``serve(conn)``."""

    def __init__(self, host: str) -> None:
        self.host, self.port = host, 0
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((self.host, 0))
        self._sock.listen(1024)
        self._sock.settimeout(0.05)  # the accept loop polls the stop flag
        self.port = self._sock.getsockname()[1]
        self._spawn(self._accept_loop)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=type(self).__name__, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self._conns.add(conn)
            self._spawn(self._run, conn)

    def _run(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except (OSError, ValueError):
            pass  # the client went away, or stop() shut the connection
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv()
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class SilentServer(_ThreadedServer):
    """Accepts connections, reads whatever comes, never answers: code 27.

    Used twice: as an HTTP proxy (the request is never answered) and as a SOCKS5 proxy (the
    greeting is never answered). Real daemons answer or time out on their own schedule
    (tinyproxy ``Timeout`` closes the connection, which is a different failure).
    """

    def serve(self, conn: socket.socket) -> None:
        while conn.recv(4096):
            pass


class Socks4IdentRejected(_ThreadedServer):
    """A SOCKS4 server that answers every request with 0x5D, "identd says the user id is wrong": code 49.

    Real servers send it only after asking an identd about the client (dante's ``rfc931``
    method); SOCKS4 has no password, so this is the one SOCKS4 "not authorised" there is.
    """

    def serve(self, conn: socket.socket) -> None:
        head = _recv_exactly(conn, 8)  # VN CD DSTPORT(2) DSTIP(4)
        _recv_until(conn, b"\x00")  # USERID
        if head[4:7] == b"\x00\x00\x00" and head[7] != 0:  # SOCKS4a: a host name follows
            _recv_until(conn, b"\x00")
        conn.sendall(b"\x00\x5d" + b"\x00" * 6)


class TlsInterceptor(_ThreadedServer):
    """An HTTP proxy that forwards plain HTTP honestly but answers CONNECT with its own TLS: code 36.

    The certificate it presents names the right host but is signed by its own CA, which the
    world's clients do not trust (reason ``tls_intercepted``). squid does this with
    ``ssl_bump``, but Debian's ``squid`` package is the GnuTLS build and ssl_bump needs the
    ``squid-openssl`` one.
    """

    def __init__(self, host: str, egress: str) -> None:
        super().__init__(host)
        self.egress = egress
        self._ca = trustme.CA(organization_name="proxycheck world interceptor")
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _context(self, hostname: str) -> ssl.SSLContext:
        with self._lock:
            if hostname not in self._contexts:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                self._ca.issue_cert(hostname).configure_cert(ctx)
                self._contexts[hostname] = ctx
            return self._contexts[hostname]

    def serve(self, conn: socket.socket) -> None:
        head = _recv_until(conn, b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with self._context(target.rpartition(":")[0].strip("[]")).wrap_socket(conn, server_side=True) as tls:
                _recv_until(tls, b"\r\n\r\n")  # only a client that ignores certificates gets here
                body = b"intercepted by the world's TLS interceptor\n"
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        self._forward(conn, method, target, head)

    def _forward(self, conn: socket.socket, method: str, target: str, head: bytes) -> None:
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        lines = [f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1".encode("latin-1")]
        for line in head.split(b"\r\n")[1:]:
            name = line.partition(b":")[0].strip().lower()
            if line and name not in (b"connection", b"proxy-connection", b"proxy-authorization", b"keep-alive"):
                lines.append(line)
        lines.append(b"Connection: close")
        with socket.create_connection((url.hostname, url.port or 80), timeout=5, source_address=(self.egress, 0)) as up:
            up.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            while chunk := up.recv(65536):
                conn.sendall(chunk)


class RotatingExit(TlsInterceptor):
    """An honest HTTP proxy (plain forwarding and CONNECT tunnels) whose exit address rotates
    among ``egresses``, like a back-connect gateway rotating on its own clock: ``rotate()`` is
    the clock tick, so a test says exactly when the exit changes (no timing in the test).

    squid could alternate ``tcp_outgoing_address`` only by ACLs on random draws or on the
    wall-clock minute, neither of which a test can pin down.
    """

    def __init__(self, host: str, egresses: tuple[str, ...]) -> None:
        super().__init__(host, egresses[0])
        self.egresses = egresses
        self._turn = 0

    def rotate(self) -> str:
        """Move to the next exit address; returns it."""
        with self._lock:
            self._turn = (self._turn + 1) % len(self.egresses)
            self.egress = self.egresses[self._turn]
            return self.egress

    def reset(self) -> None:
        with self._lock:
            self._turn, self.egress = 0, self.egresses[0]

    def serve(self, conn: socket.socket) -> None:
        head = _recv_until(conn, b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method != "CONNECT":
            self._forward(conn, method, target, head)
            return
        host, _, port = target.rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5, source_address=(self.egress, 0)) as up:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _relay(conn, up)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while True:
            for key, _ in sel.select(timeout=10):
                chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not chunk:
                    return
                key.data.sendall(chunk)


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def _recv_until(conn: socket.socket, marker: bytes) -> bytes:
    """Bytes up to and including ``marker``, one byte at a time (never reads past it)."""
    data = bytearray()
    while not data.endswith(marker):
        if len(data) > _HEAD_LIMIT:
            raise ConnectionError("head too long")
        chunk = conn.recv(1)
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return bytes(data)


class AlikeTarget:
    """A plain-HTTP target that, when switched, answers *every* caller alike (the checker's own
    direct request included): ``answer = 429`` or ``503`` for a ban target rate-limiting everyone or
    a target having a bad day; ``answer = None`` for normal service (200 and a small page for any
    path, long query strings included). Real software can be configured into one of these, but
    not switched between them every second without dropping its listening socket.
    """

    def __init__(self, host: str) -> None:
        self.host, self.port = host, 0
        self.answer: int | None = None
        self.served = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> AlikeTarget:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                target.served += 1
                status = target.answer or 200
                body = b"<html><body>ok</body></html>" if status == 200 else f"<html>{status}</html>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
