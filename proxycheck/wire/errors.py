"""What can go wrong on the wire, one class per (phase, kind), so a verdict is chosen by type alone.

Rules:
1. The wire layer raises only these classes. Whatever asyncio, ``ssl``, python-socks, httptools
   or the OS raise is translated where it happens, in the phase where it happens, and kept as
   ``__cause__``. Nothing downstream reads a message text to decide anything.
2. A ``WireError``'s text completes the sentence "<the proxy> ...": ``answered 403 Forbidden to
   CONNECT 127.0.0.2:8443``. ``target`` names the origin the request was for.
3. None of these is a ``TimeoutError``: the probe runner's own deadline stays distinguishable.

Phases, in the order a request meets them::

    connect           TCP connect to the proxy (or, with no proxy, to the origin)
    proxy_handshake   CONNECT or SOCKS exchange, TLS to an https:// proxy
    proxy_auth        the proxy refused the login (or demanded one), SOCKS4 ident
    tls               the TLS handshake with the target through the tunnel
    response_head     writing our request, then waiting for and reading the status line and headers
    body              reading the body

Writing the request has no phase of its own. A request (at most a few KB, the long GET's 2 KB
line included) fits in the socket's send buffer, so ``write()`` hands it to the kernel at once and
never fails or waits there: a peer that resets or closes shows only on the next read, as
ECONNRESET or EOF, exactly like a peer that took the request and closed without answering.
Nothing on the wire tells the two apart, so a "request" phase would be a guess; its failures are
``response_head`` (the scripted ``reset-on-accept`` row in tests/test_wire_faults.py), and its
time is in ``ttfb``.

    WireError
    ├── ConnectRefused, ConnectUnreachable, ConnectTimeout          (connect)
    ├── HandshakeTimeout, HandshakeClosed, HandshakeMalformed       (proxy_handshake)
    ├── TunnelRefused                                               (proxy_handshake)
    ├── ProxyAuthFailed, IdentRejected                              (proxy_auth)
    ├── TLSIntercepted, TLSFailed                                   (tls)
    ├── ResponseTimeout                                             (tls, response_head, body)
    ├── ConnectionClosed                                            (response_head, body, tls)
    └── BadResponse                                                 (response_head, body)
"""

from __future__ import annotations

PHASES = ("connect", "proxy_handshake", "proxy_auth", "tls", "response_head", "body")  # the order above


class WireError(Exception):
    """Something the other side (proxy or target) did. ``phase`` says when."""

    phase = ""

    def __init__(self, text: str, *, target: str = "", phase: str | None = None) -> None:
        super().__init__(text)
        self.target = target
        if phase is not None:
            self.phase = phase


class ConnectRefused(WireError):
    phase = "connect"


class ConnectUnreachable(WireError):
    phase = "connect"


class ConnectTimeout(WireError):
    phase = "connect"


class HandshakeTimeout(WireError):
    phase = "proxy_handshake"


class HandshakeClosed(WireError):
    phase = "proxy_handshake"


class HandshakeMalformed(WireError):
    phase = "proxy_handshake"


class TunnelRefused(WireError):
    """The proxy answered CONNECT with a non-2xx status, or SOCKS with a failure code."""

    phase = "proxy_handshake"


class ProxyAuthFailed(WireError):
    """407 (to CONNECT or to a forwarded request) or a failed SOCKS5 login / method choice.
    Whether that means "rejected" or "required" depends on whether we sent credentials."""

    phase = "proxy_auth"


class IdentRejected(WireError):
    """SOCKS4 reply 0x5C/0x5D: the proxy's RFC 1413 ident check refused us."""

    phase = "proxy_auth"


class TLSIntercepted(WireError):
    """The target's certificate, seen through the proxy, does not verify."""

    phase = "tls"


class TLSFailed(WireError):
    phase = "tls"


class ResponseTimeout(WireError):
    phase = "response_head"


class ConnectionClosed(WireError):
    phase = "response_head"


class BadResponse(WireError):
    phase = "response_head"


ALL: tuple[type[WireError], ...] = (
    ConnectRefused, ConnectUnreachable, ConnectTimeout, HandshakeTimeout, HandshakeClosed, HandshakeMalformed,
    TunnelRefused, ProxyAuthFailed, IdentRejected, TLSIntercepted, TLSFailed, ResponseTimeout, ConnectionClosed,
    BadResponse,
)
