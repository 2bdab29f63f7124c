"""The error catalogue: anti-captcha's proxy errors and the finer reasons that map onto them.

Rule: a proxy verdict is *data* — an anti-captcha error id plus a stable machine reason —
never an exception. Every reason a probe can produce is listed in ``REASONS`` with the code it
predicts, so adding a failure mode is one row here (and a test row proves none is unmapped).
"""

from __future__ import annotations

from dataclasses import dataclass

# anti-captcha error ids in scope (https://anti-captcha.com/apidoc/errors; docs/codes.md).
ERROR_NAMES: dict[int, str] = {
    25: "ERROR_PROXY_CONNECT_REFUSED",
    26: "ERROR_PROXY_CONNECT_TIMEOUT",
    27: "ERROR_PROXY_READ_TIMEOUT",
    28: "ERROR_PROXY_BANNED",
    29: "ERROR_PROXY_TRANSPARENT",
    35: "ERROR_PROXY_HAS_NO_IMAGE_SUPPORT",
    36: "ERROR_PROXY_INCOMPATIBLE_HTTP_VERSION",
    49: "ERROR_PROXY_NOT_AUTHORISED",
}

# Codes that no amount of retrying fixes: the health machine applies them at once.
DEFINITIVE_CODES = frozenset({29, 49})


@dataclass(frozen=True)
class Reason:
    code: int
    summary: str


# Stable machine reasons. Stored in the database and printed in --json: never rename one.
REASONS: dict[str, Reason] = {
    "connect_refused": Reason(25, "TCP connect to the proxy was refused"),
    "connect_unreachable": Reason(25, "the proxy's address is unreachable"),
    "request_rejected": Reason(25, "the proxy refused to forward a plain-HTTP request (403, 5xx...)"),
    "connect_timeout": Reason(26, "TCP connect to the proxy timed out"),
    "read_timeout": Reason(27, "the proxy accepted the connection but did not answer in time"),
    "handshake_timeout": Reason(27, "the proxy did not finish its SOCKS/CONNECT handshake in time"),
    "connection_closed": Reason(27, "the proxy closed the connection without an answer"),
    "auth_rejected": Reason(49, "the proxy rejected the login/password"),
    "auth_required": Reason(49, "the proxy demands credentials that were not given"),
    "ident_rejected": Reason(49, "the SOCKS4 proxy refused our user id"),
    "ip_leaked": Reason(29, "the proxy reveals the client's IP address"),
    "connect_rejected": Reason(36, "the proxy refused to open a CONNECT/SOCKS tunnel"),
    "tls_failed": Reason(36, "the TLS handshake through the tunnel failed"),
    "tls_intercepted": Reason(36, "the proxy substituted the target's TLS certificate"),
    "long_get_rejected": Reason(36, "the proxy rejected a long (~2 KB) GET request"),
    "bad_response": Reason(36, "the proxy answered with something that is not valid HTTP"),
    "image_blocked": Reason(35, "an image did not come through the proxy"),
    "image_corrupted": Reason(35, "an image came through the proxy altered or incomplete"),
    "banned": Reason(28, "the target treats the proxy's exit IP as banned"),
    # From two vantages (vantage.py rule 3): the result carries the code of what the refused one
    # saw (49 for a 407 or SOCKS5 0xFF, 25 for a refused connection or a 403, 27 for a reset).
    "ip_locked": Reason(49, "the proxy admits some source addresses only: a captcha service connecting from its own "
                            "servers gets 25/49 unless its address is on your provider's allow-list"),
}

# What a check notes about a proxy without failing it: the task would run, so no anti-captcha
# code is predicted (REASONS rows all predict one). Stored in their own columns, never in
# ``reason``; each is one branch of the hand-out rule (store/eligibility.py).
MARKS: dict[str, str] = {
    "geo_mismatch": "the proxy is tagged country:XX but its exit IP is in another country ([geo]); "
                    "not handed out to requests that ask for that tag (country= and asn= go by the observed exit)",
}

# Outcomes that are not about the proxy at all.
CHECKER_UNAVAILABLE = "checker_unavailable"
INTERNAL_ERROR = "internal_error"


def error_name(code: int | None) -> str | None:
    """``28`` -> ``"ERROR_PROXY_BANNED"``; ``None`` stays ``None``."""
    return None if code is None else ERROR_NAMES[code]


def code_for(reason: str) -> int:
    return REASONS[reason].code


def parse_code(text: str) -> int:
    """Accept ``29``, ``"29"``, ``"ERROR_PROXY_TRANSPARENT"`` or ``"proxy_transparent"``."""
    text = text.strip()
    if text.isdigit() and int(text) in ERROR_NAMES:
        return int(text)
    wanted = text.upper()
    for code, name in ERROR_NAMES.items():
        if wanted in (name, name.removeprefix("ERROR_")):
            return code
    known = ", ".join(f"{c} ({n})" for c, n in ERROR_NAMES.items())
    raise ValueError(f"unknown proxy error {text!r}; known: {known}")
