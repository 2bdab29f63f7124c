"""The process's one shared SSL context, which resumes TLS sessions.

Rules:
1. One ``ssl.SSLContext`` per process (building one costs ~18 ms of CPU, measured; loading the
   CA bundle is slow under OpenSSL 3: https://github.com/python/cpython/issues/95031), trusting
   the system/certifi CAs plus ``[targets].ca_file``, verifying certificates and host names as
   ``ssl.create_default_context()`` does, offering ALPN ``http/1.1`` only (as httpcore set it
   when the probes used httpx).
2. It resumes sessions, as browsers do: a handshake with a server offers the session (TLS 1.3
   ticket) that server last gave any of our connections, keyed by host name. A resumed handshake
   skips sending and verifying the certificate chain: about 0.50 instead of 0.73 ms of client CPU
   under OpenSSL 3.0 (``bench/tls_resume.py``: wrap_bio, handshake and first read), and the ``ssl``
   probe shakes hands through every proxy on every check. Of the 0.50 ms, 0.2 to 0.3 ms is CPython
   copying the offered session in ``wrap_bio`` (``_ssl_session_dup``: an i2d + d2i with the
   server's certificate); ``ssl`` has no way to offer one without that copy.
   It proves as much about the proxy: the tunnel still carries a whole TLS handshake to the
   server, and a proxy that intercepts TLS cannot resume a session the real server issued (it
   cannot read the ticket), so it falls back to a full handshake with its own certificate, which
   fails verification as before. A session is kept only from a handshake that verified, and
   only after an answer was read on it (TLS 1.3 sends tickets after the handshake), and only
   from a full handshake. A server that declines a ticket (expired, its keys rotated) simply
   does a full handshake, whose session is kept instead.
The probes' HTTP client is ``proxycheck.wire`` (its docstring says why it is our own); users who
want httpx through a proxy take ``Proxy.httpx_proxy``.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from functools import lru_cache

import certifi

SESSIONS_KEPT = 512  # host names; the probes talk to a handful of targets


class ResumingContext(ssl.SSLContext):
    """A client context that offers each server its last session (rule 2)."""

    sessions: OrderedDict[str, ssl.SSLSession]

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        if session is None and not server_side and server_hostname:
            session = self.sessions.get(server_hostname)
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def keep_session(self, ssl_object: ssl.SSLObject) -> None:
        """Keep what the server of ``ssl_object`` (a verified connection that answered) issued.
        A connection that resumed the session kept for its server changes nothing: the server
        took that session, so it still works, and reading one costs ~0.13 ms of CPU (``ssl``
        copies it). A full handshake (none kept, or the server declined it) gives a new one."""
        host = ssl_object.server_hostname
        if not host or (ssl_object.session_reused and host in self.sessions):
            return
        session = ssl_object.session
        if session is not None and session.has_ticket:
            self.sessions[host] = session
            self.sessions.move_to_end(host)
            if len(self.sessions) > SESSIONS_KEPT:
                self.sessions.popitem(last=False)


@lru_cache(maxsize=8)
def shared_ssl_context(ca_file: str = "") -> ResumingContext:
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)  # verify_mode CERT_REQUIRED, check_hostname on
    ctx.sessions = OrderedDict()
    ctx.load_verify_locations(cafile=certifi.where())
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
