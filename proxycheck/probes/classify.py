"""The one place where an exception becomes a verdict: a table keyed by exception type.

Rules:
1. The wire (``proxycheck.wire``) raises one class per (phase, kind); each class has one row
   here. A row is a reason, or a pair (reason without credentials, reason with credentials)
   where the meaning depends on whether we sent a login. Lookup walks the class's MRO, so a
   subclass inherits its parent's row. No message text is ever read.
2. ``TimeoutError`` is the probe runner's own deadline (no wire error is one).
3. Anything else is not a proxy failure we know: ``None``, and the runner reports
   ``internal_error`` with the traceback. tests/unit/test_classify.py proves every wire error
   class has a row.

The detail is "<who> <the error's own sentence>", plus what a 407 means for the credentials.
"""

from __future__ import annotations

from ..wire import errors as e

Verdict = tuple[str, str]

VERDICTS: dict[type[BaseException], str | tuple[str, str]] = {
    e.ConnectRefused: "connect_refused",
    e.ConnectUnreachable: "connect_unreachable",
    e.ConnectTimeout: "connect_timeout",
    e.HandshakeTimeout: "handshake_timeout",
    e.HandshakeClosed: "connection_closed",
    e.HandshakeMalformed: "bad_response",
    e.TunnelRefused: "connect_rejected",
    e.ProxyAuthFailed: ("auth_required", "auth_rejected"),
    e.IdentRejected: "ident_rejected",
    e.TLSIntercepted: "tls_intercepted",
    e.TLSFailed: "tls_failed",
    e.ResponseTimeout: "read_timeout",
    e.ConnectionClosed: "connection_closed",
    e.BadResponse: "bad_response",
    TimeoutError: "read_timeout",
}

_AUTH_WORDS = {
    "auth_required": "it wants a login/password and none was given",
    "auth_rejected": "the login/password was rejected",
}


def classify_exception(exc: BaseException, who: str, timeout_text: str, *, has_credentials: bool) -> Verdict | None:
    for cls in type(exc).__mro__:
        row = VERDICTS.get(cls)
        if row is None:
            continue
        reason = row if isinstance(row, str) else row[has_credentials]
        if cls is TimeoutError:
            return reason, f"{who} gave no answer within the {timeout_text} probe deadline"
        detail = f"{who} {exc}"
        if reason in _AUTH_WORDS:
            detail += f": {_AUTH_WORDS[reason]}"
        elif reason == "tls_intercepted":
            detail += ": the proxy substitutes certificates"
        return reason, detail
    return None
