"""Every exception the wire can raise maps to a reason (or is our bug) — in one table, by type."""

import pytest

from proxycheck.probes.classify import VERDICTS, classify_exception
from proxycheck.verdict import REASONS
from proxycheck.wire import errors as e


def classify(exc, creds=False):
    return classify_exception(exc, "HTTP proxy 1.2.3.4:3128", "2 s", has_credentials=creds)


# Every wire error class, a representative sentence, and the reason a correct table gives it.
CASES = [
    (e.ConnectRefused("refused the TCP connection (Connection refused)"), "connect_refused"),
    (e.ConnectUnreachable("is unreachable (No route to host)"), "connect_unreachable"),
    (e.ConnectTimeout("did not accept a TCP connection within 1 s"), "connect_timeout"),
    (e.HandshakeTimeout("did not finish the CONNECT/SOCKS handshake for 127.0.0.2:443 within 2 s"), "handshake_timeout"),
    (e.HandshakeClosed("closed the connection during the SOCKS handshake"), "connection_closed"),
    (e.HandshakeMalformed("answered the SOCKS5 greeting with a malformed reply (0000)"), "bad_response"),
    (e.TunnelRefused("answered 403 Forbidden to CONNECT 127.0.0.2:8443"), "connect_rejected"),
    (e.ProxyAuthFailed("answered 407 Proxy Authentication Required to CONNECT 127.0.0.2:8443"), "auth_required"),
    (e.IdentRejected("refused our SOCKS4 user id (reply 0x5d)"), "ident_rejected"),
    (e.TLSIntercepted("presented a certificate for 127.0.0.2:8443 that does not verify"), "tls_intercepted"),
    (e.TLSFailed("broke the TLS handshake with 127.0.0.2:8443 (WRONG_VERSION_NUMBER)"), "tls_failed"),
    (e.ResponseTimeout("accepted the connection but sent no answer"), "read_timeout"),
    (e.ConnectionClosed("closed the connection without answering"), "connection_closed"),
    (e.BadResponse("answered with invalid HTTP"), "bad_response"),
    (TimeoutError(), "read_timeout"),
]


def test_every_wire_error_class_is_in_the_table_and_the_cases():
    concrete = {cls for cls in vars(e).values() if isinstance(cls, type) and issubclass(cls, e.WireError) and cls is not e.WireError}
    assert concrete == set(e.ALL)
    assert concrete <= set(VERDICTS), f"unmapped wire errors: {concrete - set(VERDICTS)}"
    assert {type(exc) for exc, _ in CASES} == set(VERDICTS)


@pytest.mark.parametrize(("exc", "reason"), CASES, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
def test_each_class_gives_its_reason(exc, reason):
    assert classify(exc)[0] == reason


def test_every_row_names_a_known_reason():
    for row in VERDICTS.values():
        for reason in (row,) if isinstance(row, str) else row:
            assert reason in REASONS


def test_407_depends_on_whether_we_sent_a_login():
    exc = e.ProxyAuthFailed("answered 407 Proxy Authentication Required to GET 127.0.0.2:8080")
    assert classify(exc, creds=True) == (
        "auth_rejected", "HTTP proxy 1.2.3.4:3128 answered 407 Proxy Authentication Required to GET 127.0.0.2:8080: "
        "the login/password was rejected")
    assert classify(exc)[0] == "auth_required" and classify(exc)[1].endswith("it wants a login/password and none was given")


def test_connect_403_names_target():
    reason, detail = classify(e.TunnelRefused("answered 403 Forbidden to CONNECT 127.0.0.2:8443"))
    assert reason == "connect_rejected" and detail == "HTTP proxy 1.2.3.4:3128 answered 403 Forbidden to CONNECT 127.0.0.2:8443"


def test_the_verdict_follows_the_type_not_the_words():
    """Same words, different class, different verdict: nothing reads the message text."""
    words = "answered 407 Proxy Authentication Required"
    assert classify(e.TunnelRefused(words))[0] == "connect_rejected"
    assert classify(e.ProxyAuthFailed(words))[0] == "auth_required"


def test_a_subclass_inherits_its_parents_row():
    class Slower(e.ConnectTimeout):
        pass

    assert classify(Slower("x"))[0] == "connect_timeout"


@pytest.mark.parametrize("exc", [KeyError("x"), OSError(5, "EIO"), ValueError("bad"), RuntimeError("bug")])
def test_anything_else_is_ours(exc):
    assert classify(exc) is None


def test_every_reason_has_a_code():
    assert all(r.code in (25, 26, 27, 28, 29, 35, 36, 49) for r in REASONS.values())


def test_probes_never_catch():
    """No exception-to-verdict mapping outside the table: no probe module has a try/except around
    the wire. (``selftest_fetch`` is the self-test's, where a failed fetch is our trouble; a ValueError
    from a pure parser inside a probe is data, not the wire, and is allowed.)"""
    import ast
    from pathlib import Path

    import proxycheck.probes as probes

    for path in Path(probes.__file__).parent.glob("*.py"):
        if path.name in ("selftest_fetch.py", "classify.py", "base.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Try):
                caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
                assert caught <= {"ValueError", "json.JSONDecodeError"}, f"{path.name}:{node.lineno} catches {caught}"
