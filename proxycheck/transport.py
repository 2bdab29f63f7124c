"""The process's one shared SSL context.

Rule: one ``ssl.SSLContext`` per process (building one costs ~18 ms of CPU, measured; loading
the CA bundle is slow under OpenSSL 3: https://github.com/python/cpython/issues/95031), trusting
the system/certifi CAs plus ``[targets].ca_file``, offering ALPN ``http/1.1`` only (as httpcore
set it when the probes used httpx, so the TLS handshakes stay byte for byte what they were).
The probes' HTTP client is ``proxycheck.wire`` (its docstring says why it is our own); users who
want httpx through a proxy take ``Proxy.httpx_proxy``.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

import certifi


@lru_cache(maxsize=8)
def shared_ssl_context(ca_file: str = "") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
