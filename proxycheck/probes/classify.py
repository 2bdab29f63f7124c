"""Translate what the network raised into (reason, human detail) — at exactly one boundary.

httpx, httpcore, socksio, python-socks, ssl and the OS each raise their own classes for the same
event (see ../shared/research/ops.md §6.2). This module maps every one of them to the most
specific reason in ``verdict.REASONS``. Returning ``None`` means "not a proxy failure we know":
the runner reports it as ``internal_error`` and logs the traceback.
tests/test_classify.py proves every httpx exception class is mapped.
"""

from __future__ import annotations

import errno
import socket
import ssl

import httpx
import python_socks
import socksio

Verdict = tuple[str, str]

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN}
_REFUSED = {errno.ECONNREFUSED}
_CLOSED = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}

# SOCKS4 reply codes that concern the client's identity (RFC 1413 ident), not the target.
_SOCKS4_IDENT_CODES = {0x5C, 0x5D}


def classify_exception(exc: BaseException, who: str, timeout_text: str, *, has_credentials: bool) -> Verdict | None:
    target = _target_of(exc)
    for cause in _chain(exc):
        verdict = _classify_one(cause, who, target, timeout_text, has_credentials)
        if verdict is not None:
            return verdict
    # Wrappers whose cause we could not read still say which phase broke.
    if isinstance(exc, httpx.ConnectError):
        return "connect_refused", f"could not connect through {who} to {target} ({exc})"
    if isinstance(exc, httpx.NetworkError):
        return "connection_closed", f"{who} broke the connection to {target} ({exc})"
    return None


def _classify_one(exc: BaseException, who: str, target: str, timeout_text: str, has_credentials: bool) -> Verdict | None:
    # -- timeouts ------------------------------------------------------------------------------
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout", f"TCP connect to {who} timed out"
    if isinstance(exc, python_socks.ProxyTimeoutError):
        return "handshake_timeout", f"{who} did not finish the SOCKS handshake for {target} within {timeout_text}"
    if isinstance(exc, httpx.TimeoutException):  # read, write and pool timeouts
        return "read_timeout", f"{who} accepted the connection but sent no answer to {target} within {timeout_text}"

    # -- the proxy said no -------------------------------------------------------------------------
    if isinstance(exc, httpx.ProxyError):  # CONNECT answered with a non-2xx status
        status = str(exc).strip()
        if status.startswith("407"):
            return _auth_verdict(who, f"answered {status} to CONNECT {target}", has_credentials)
        return "connect_rejected", f"{who} answered {status} to CONNECT {target}"
    if isinstance(exc, python_socks.ProxyConnectionError):
        return _os_verdict(exc, who) or ("connect_refused", f"TCP connect to {who} failed: {exc}")
    if isinstance(exc, python_socks.ProxyError):
        return _socks_verdict(exc, who, target, has_credentials)
    if isinstance(exc, socksio.ProtocolError):
        return "bad_response", f"{who} answered the SOCKS handshake with a malformed reply ({exc})"

    # -- TLS through the tunnel ----------------------------------------------------------------
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_intercepted", (
            f"the certificate for {target} seen through {who} does not verify "
            f"({getattr(exc, 'verify_message', None) or getattr(exc, 'reason', None) or exc}): the proxy substitutes certificates"
        )
    if isinstance(exc, ssl.SSLError):
        return "tls_failed", f"the TLS handshake with {target} through {who} failed ({getattr(exc, 'reason', None) or exc})"

    # -- the connection broke ------------------------------------------------------------------
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        if "without sending" in text or "disconnected" in text:
            return "connection_closed", f"{who} closed the connection without answering {target}"
        return "bad_response", f"{who} answered {target} with invalid HTTP ({text})"
    if isinstance(exc, httpx.DecodingError):
        return "bad_response", f"{who} returned a body for {target} that does not decode ({exc})"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        return "connection_closed", f"{who} dropped the connection while talking to {target} ({exc or type(exc).__name__})"
    if isinstance(exc, (python_socks._errors.IncompleteReadError, EOFError)):
        return "connection_closed", f"{who} closed the connection during the SOCKS handshake for {target}"
    if isinstance(exc, OSError):
        return _os_verdict(exc, who)
    return None


def _auth_verdict(who: str, what: str, has_credentials: bool) -> Verdict:
    if has_credentials:
        return "auth_rejected", f"{who} {what}: the login/password was rejected"
    return "auth_required", f"{who} {what}: it wants a login/password and none was given"


def _socks_verdict(exc: python_socks.ProxyError, who: str, target: str, has_credentials: bool) -> Verdict:
    text = str(exc)
    lowered = text.lower()
    if "authentication failure" in lowered or "invalid authentication response" in lowered:
        return _auth_verdict(who, f"answered the SOCKS5 login with '{text}'", has_credentials)
    if "no acceptable authentication methods" in lowered or "unexpected socks authentication method" in lowered:
        return _auth_verdict(who, "accepted none of our SOCKS5 authentication methods", has_credentials)
    code = getattr(exc, "error_code", None)
    if code in _SOCKS4_IDENT_CODES:
        return "ident_rejected", f"{who} refused our SOCKS4 user id ({text}, code {code:#04x})"
    if "malformed" in lowered or "unexpected" in lowered or "invalid" in lowered:
        return "bad_response", f"{who} answered the SOCKS handshake for {target} with a malformed reply ({text})"
    if text.startswith("407"):
        return _auth_verdict(who, f"answered {text} to CONNECT {target}", has_credentials)
    suffix = f", code {code:#04x}" if isinstance(code, int) else ""
    return "connect_rejected", f"{who} refused to open a tunnel to {target} ({text}{suffix})"


def _os_verdict(exc: OSError, who: str) -> Verdict | None:
    if isinstance(exc, socket.gaierror):
        return "connect_unreachable", f"the proxy host of {who} does not resolve ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError) or exc.errno in _REFUSED:
        return "connect_refused", f"TCP connect to {who} was refused"
    if exc.errno in _UNREACHABLE:
        return "connect_unreachable", f"{who} is unreachable ({exc.strerror})"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)) or exc.errno in _CLOSED:
        return "connection_closed", f"{who} reset the connection"
    if isinstance(exc, TimeoutError):
        return "connect_timeout", f"TCP connect to {who} timed out"
    return None


def _chain(exc: BaseException):
    """The exception, then its causes/contexts: httpx wraps httpcore which wraps the OS error."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _target_of(exc: BaseException) -> str:
    for e in _chain(exc):
        if isinstance(e, httpx.RequestError):
            try:
                url = e.request.url
            except RuntimeError:
                continue
            return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
    return "the target"
