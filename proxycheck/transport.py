"""The process's one shared SSL context, and httpx clients through a proxy for users' code.

The probes do not use httpx: they have their own wire (``proxycheck.wire``, see its docstring
for why). What stays here is what users' code may want: a proxy in httpx's shape.

Rules:
1. One ``ssl.SSLContext`` per process (building one costs ~18 ms of CPU; ops.md §6.3), trusting
   the system/certifi CAs plus ``[targets].ca_file``, offering ALPN ``http/1.1`` only (as httpcore
   set it, so the TLS handshakes are byte for byte what they were).
2. Every client has ``trust_env=False``: the daemon's own HTTP_PROXY must never reroute a probe.
3. One client per proxy check: plain-HTTP probes share one keep-alive connection to the proxy,
   HTTPS probes to one host share one tunnel; nothing is shared between proxies.
4. HTTP(S) proxies go through httpx's own proxy support; SOCKS4/4a/5/5h go through httpx-socks
   (python-socks), which also honours timeouts during the SOCKS handshake.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

import certifi
import httpx
from httpx_socks import AsyncProxyTransport
from python_socks import ProxyType

from .config import Settings
from .proxy import Proxy

_SOCKS = {
    "socks4": (ProxyType.SOCKS4, False),
    "socks4a": (ProxyType.SOCKS4, True),
    "socks5": (ProxyType.SOCKS5, False),
    "socks5h": (ProxyType.SOCKS5, True),
}


@lru_cache(maxsize=8)
def shared_ssl_context(ca_file: str = "") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def timeouts(settings: Settings) -> httpx.Timeout:
    t = settings.timeouts
    return httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.read)


def client_for(proxy: Proxy, settings: Settings, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    headers = {"User-Agent": settings.probes.user_agent, "Accept": "*/*"}
    common = dict(verify=ssl_context, trust_env=False, timeout=timeouts(settings), follow_redirects=False, headers=headers)
    if proxy.scheme in _SOCKS:
        proxy_type, rdns = _SOCKS[proxy.scheme]
        transport = AsyncProxyTransport(
            proxy_type=proxy_type, proxy_host=proxy.host, proxy_port=proxy.port,
            username=proxy.username, password=proxy.password, rdns=rdns,
            verify=ssl_context, trust_env=False, limits=limits,
        )
        return httpx.AsyncClient(transport=transport, **common)
    auth = None if proxy.username is None else (proxy.username, proxy.password or "")
    target = httpx.Proxy(
        f"{proxy.scheme}://{proxy.host_for_url}:{proxy.port}", auth=auth,
        ssl_context=ssl_context if proxy.scheme == "https" else None,
    )
    return httpx.AsyncClient(proxy=target, limits=limits, **common)


def direct_client(settings: Settings, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
    """No proxy at all: for the checker's own reachability and IP checks."""
    return httpx.AsyncClient(verify=ssl_context, trust_env=False, timeout=timeouts(settings), follow_redirects=False,
                             headers={"User-Agent": settings.probes.user_agent})
