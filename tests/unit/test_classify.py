"""Every exception the network stack can raise maps to a reason (or is our bug) — at one place."""

import errno
import inspect
import socket
import ssl

import httpx
import pytest
import python_socks
import socksio

from proxycheck.probes.classify import classify_exception
from proxycheck.verdict import REASONS


def classify(exc, creds=False):
    return classify_exception(exc, "HTTP proxy 1.2.3.4:3128", "2 s", has_credentials=creds)


def _request():
    return httpx.Request("GET", "https://127.0.0.2:8443/x")


# Every concrete httpx exception a transport can raise, with a representative instance.
HTTPX_CASES = {
    httpx.ConnectTimeout: "connect_timeout",
    httpx.ReadTimeout: "read_timeout",
    httpx.WriteTimeout: "read_timeout",
    httpx.PoolTimeout: "read_timeout",
    httpx.ProxyError: "connect_rejected",
    httpx.RemoteProtocolError: "bad_response",
    httpx.LocalProtocolError: None,  # we sent something wrong: our bug
    httpx.DecodingError: "bad_response",
    httpx.ReadError: "connection_closed",
    httpx.WriteError: "connection_closed",
    httpx.CloseError: "connection_closed",
    httpx.ConnectError: "connect_refused",
    httpx.UnsupportedProtocol: None,
    httpx.TooManyRedirects: None,
}


def test_every_httpx_request_error_is_listed():
    concrete = {
        cls for _, cls in inspect.getmembers(httpx, inspect.isclass)
        if issubclass(cls, httpx.RequestError) and not cls.__subclasses__()
    }
    assert concrete <= set(HTTPX_CASES), f"unmapped httpx exceptions: {concrete - set(HTTPX_CASES)}"


@pytest.mark.parametrize(("cls", "reason"), HTTPX_CASES.items(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_httpx_classes(cls, reason):
    verdict = classify(cls("boom", request=_request()))
    assert (verdict[0] if verdict else None) == reason


def test_connect_407_is_auth():
    assert classify(httpx.ProxyError("407 Proxy Authentication Required", request=_request()), creds=True)[0] == "auth_rejected"
    assert classify(httpx.ProxyError("407 Proxy Authentication Required", request=_request()))[0] == "auth_required"


def test_connect_403_names_target():
    reason, detail = classify(httpx.ProxyError("403 Forbidden", request=_request()))
    assert reason == "connect_rejected" and detail == "HTTP proxy 1.2.3.4:3128 answered 403 Forbidden to CONNECT 127.0.0.2:8443"


def _wrapped(inner):
    try:
        try:
            raise inner
        except Exception as e:
            raise httpx.ConnectError(str(e), request=_request()) from e
    except httpx.ConnectError as outer:
        return outer


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connect_refused"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "connect_unreachable"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "connection_closed"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls_intercepted"),
        (ssl.SSLError(1, "wrong version number"), "tls_failed"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "connect_unreachable"),
    ],
)
def test_wrapped_os_and_tls_errors(inner, reason):
    assert classify(_wrapped(inner))[0] == reason


@pytest.mark.parametrize(
    ("exc", "creds", "reason"),
    [
        (python_socks.ProxyTimeoutError("timeout"), False, "handshake_timeout"),
        (python_socks.ProxyConnectionError(errno.ECONNREFUSED, "Couldn't connect"), False, "connect_refused"),
        (python_socks.ProxyError("Username and password authentication failure"), True, "auth_rejected"),
        (python_socks.ProxyError("No acceptable authentication methods were offered"), False, "auth_required"),
        (python_socks.ProxyError("Request rejected because SOCKS server cannot connect to identd", 0x5C), True, "ident_rejected"),
        (python_socks.ProxyError("Request rejected because the client program and identd report different user-ids", 0x5D), True, "ident_rejected"),
        (python_socks.ProxyError("Request rejected or failed", 0x5B), False, "connect_rejected"),
        (python_socks.ProxyError("Connection not allowed by ruleset", 0x02), False, "connect_rejected"),
        (python_socks.ProxyError("Malformed connect reply"), False, "bad_response"),
        (socksio.ProtocolError("Malformed reply"), False, "bad_response"),
    ],
)
def test_socks_errors(exc, creds, reason):
    assert classify(exc, creds)[0] == reason


def test_unknown_exception_is_ours():
    assert classify(KeyError("x")) is None


def test_every_reason_has_a_code():
    assert all(r.code in (25, 26, 27, 28, 29, 35, 36, 49) for r in REASONS.values())
