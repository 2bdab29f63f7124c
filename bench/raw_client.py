"""The baseline: the suite's traffic made with nothing but asyncio streams and one SSLContext.

Per proxy, in the suite's order and over the same connections the suite opens (one keep-alive
connection per plain-HTTP origin, one CONNECT tunnel per HTTPS origin; counted by squid, see
bench/README.md):

  tcp_connect  TCP connect to the proxy, kept open as the spare (proxycheck/wire/session.py rule 1)
  anonymity    plain:  GET judge_url?proxycheck=<nonce> (absolute-form) on the spare; 200, nonce, JSON origin
  ssl          tunnel: CONNECT host:port, TLS handshake (verified), GET ssl_url
  long_get     plain:  GET long_get_url?pad=xxx... (request line >= long_get_bytes); 200
  images       plain or tunnel by scheme: GET each image; 200, image/*, length, magic bytes
  ban          tunnel: GET ban_url; 200 and no ban phrase

Each step runs under ``asyncio.timeout(probe deadline)``, as ``run_probe`` does. The checks are
the minimum that proves the answer arrived whole; the point is the floor cost of the traffic, so
suite/raw is what httpx, httpcore, anyio, h11 and our probe code add on top. Not done: the
executor ``getaddrinfo`` the suite's tcp_connect makes for an IP literal, and the preflight.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import tomllib
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
BAN_PHRASES = (b"unusual traffic", b"automated queries", b"/sorry/index")
PNG = b"\x89PNG\r\n\x1a\n"


class Unhealthy(Exception):
    pass


@dataclass(frozen=True)
class Targets:
    judge_url: str
    ssl_url: str
    image_urls: tuple[str, ...]
    long_get_url: str
    ban_url: str
    ca_file: str
    deadline: float
    long_get_bytes: int = 2048

    @classmethod
    def from_toml(cls, path: str) -> Targets:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        t = data["targets"]
        return cls(t["judge_url"], t["ssl_url"], tuple(t["image_urls"]), t["long_get_url"], t["ban_url"],
                   t.get("ca_file", ""), float(data.get("timeouts", {}).get("probe", 25.0)))


def ssl_context(ca_file: str) -> ssl.SSLContext:
    """Built like proxycheck's shared context: certifi plus the bench CA, HTTP/1.1 only."""
    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Conn:
    """One HTTP/1.1 keep-alive connection: request out, status + headers + Content-Length body in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool) -> None:
        self.reader, self.writer, self.tls = reader, writer, tls

    async def get(self, target: str, host: str) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
            f"Connection: keep-alive\r\nUser-Agent: {USER_AGENT}\r\n\r\n".encode()
        )
        await self.writer.drain()
        status, headers = await self.read_head()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def read_head(self) -> tuple[int, dict[str, str]]:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return int(head[0].split(" ", 2)[1]), headers

    def close(self) -> None:
        if self.tls:
            self.writer.transport.abort()  # no close_notify: httpcore wraps with standard_compatible=False
        else:
            self.writer.close()


class ProxySession:
    """Everything one proxy's check opens: plain connections and tunnels, keyed by origin."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext) -> None:
        self.host, self.port, self.ctx = host, port, ctx
        self.plain: dict[str, Conn] = {}
        self.tunnels: dict[str, Conn] = {}
        self.spare: Conn | None = None  # tcp_connect's connection: the first plain GET's

    async def connect(self) -> None:
        self.spare = Conn(*await asyncio.open_connection(self.host, self.port), tls=False)

    async def get(self, url: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        spare, self.spare = self.spare, None
        if spare is not None and (parts.scheme != "http" or parts.netloc in self.plain):
            spare.close()
            spare = None
        if parts.scheme == "http":
            if spare is not None:
                self.plain[parts.netloc] = spare
            conn = self.plain.get(parts.netloc) or await self._open_plain(parts.netloc)
            answer = await conn.get(url, parts.netloc)  # absolute-form: the proxy forwards it
            pool = self.plain
        else:
            conn = self.tunnels.get(parts.netloc) or await self._open_tunnel(parts.netloc, parts.hostname)
            answer = await conn.get((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), parts.netloc)
            pool = self.tunnels
        if answer[1].get("connection", "").lower() == "close":
            pool.pop(parts.netloc).close()
        return answer

    async def _open_plain(self, origin: str) -> Conn:
        self.plain[origin] = Conn(*await asyncio.open_connection(self.host, self.port), tls=False)
        return self.plain[origin]

    async def _open_tunnel(self, origin: str, hostname: str) -> Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        conn = Conn(reader, writer, tls=False)
        self.tunnels[origin] = conn
        writer.write(f"CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\nAccept: */*\r\n\r\n".encode())
        await writer.drain()
        status, _ = await conn.read_head()
        if status != 200:
            raise Unhealthy(f"CONNECT {origin} answered {status}")
        await writer.start_tls(self.ctx, server_hostname=hostname)
        conn.tls = True
        return conn

    def close(self) -> None:
        for conn in (*self.plain.values(), *self.tunnels.values(), *([self.spare] if self.spare else [])):
            conn.close()


def long_url(base: str, min_request_line: int) -> str:
    stub = base + ("&" if "?" in base else "?") + "pad="
    return stub + "x" * max(0, min_request_line - len("GET  HTTP/1.1") - len(stub))


async def check(address: str, t: Targets, ctx: ssl.SSLContext, own_ips: frozenset[str]) -> str | None:
    """None if the proxy passed, else what failed."""
    host, port = address.rsplit(":", 1)
    s = ProxySession(host, int(port), ctx)
    try:
        async with asyncio.timeout(t.deadline):  # tcp_connect
            await s.connect()
        async with asyncio.timeout(t.deadline):  # anonymity
            nonce = secrets.token_hex(8)
            status, _, body = await s.get(f"{t.judge_url}{'&' if '?' in t.judge_url else '?'}proxycheck={nonce}")
            if status != 200 or nonce.encode() not in body:
                return f"judge answered {status} without the nonce"
            origin = json.loads(body)["origin"]
            if origin in own_ips:
                return f"transparent: judge saw {origin}"
        async with asyncio.timeout(t.deadline):  # ssl
            await s.get(t.ssl_url)
        async with asyncio.timeout(t.deadline):  # long_get
            status, _, _ = await s.get(long_url(t.long_get_url, t.long_get_bytes))
            if status != 200:
                return f"long GET answered {status}"
        async with asyncio.timeout(t.deadline):  # images
            for url in t.image_urls:
                status, headers, body = await s.get(url)
                if status != 200 or not headers.get("content-type", "").startswith("image/") \
                        or len(body) != int(headers.get("content-length", -1)) or not body.startswith(PNG):
                    return f"image {url} broken ({status}, {len(body)} bytes)"
        async with asyncio.timeout(t.deadline):  # ban
            status, _, body = await s.get(t.ban_url)
            lowered = body.lower()
            if status != 200 or any(p in lowered for p in BAN_PHRASES):
                return f"ban target answered {status}"
        return None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, Unhealthy,
            ValueError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        s.close()


async def check_many(addresses: list[str], t: Targets, ctx: ssl.SSLContext, concurrency: int,
                     own_ips: frozenset[str]) -> list[tuple[str, str | None]]:
    """``concurrency`` workers pull from one iterator: at most that many checks (and tasks) exist."""
    todo = iter(addresses)
    results: list[tuple[str, str | None]] = []

    async def worker() -> None:
        for address in todo:
            results.append((address, await check(address, t, ctx, own_ips)))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results
