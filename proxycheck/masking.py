"""Masking passwords in text that may not parse: command-line arguments, error and log lines.

Rules:
1. Masking never gives up. It does not parse the URL (``urlsplit`` raises on the very input that
   needs masking, such as ``http://alice:S3cr3t@[::1``); it masks by shape.
2. In one argument, the credentials are everything between ``scheme://`` and the *last* ``@``:
   the login (up to the first ``:``) stays, the rest becomes ``***``; what follows the ``@`` is
   shown only if it looks like ``host:port`` (else it may be the tail of a password). Without an ``@``, the
   ``host:port:login:password`` form keeps ``host:port`` only, and a "port" that is not one
   (``http://alice:S3cr3t``: the host forgotten) is masked.
3. In free text (log lines), a URL ends at whitespace; ``Authorization: Basic <base64>`` (also
   ``Proxy-Authorization``) is masked as well. Masking too much is fine; too little is a leak.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme:// then login (lazy, up to the first ':') then everything up to the last '@' before
# whitespace. Bounded repeats keep this linear on long lines (a 16 KB request line must not cost seconds).
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]{0,31}://)(?P<login>[^\s:/]{0,256}?):(?P<pw>\S{1,4096})@", re.I)
_PORT = re.compile(r"[0-9]{1,5}/?")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]*\]?|[A-Za-z0-9._-]*)(:[0-9]*)?/?")
_BASIC = re.compile(r"(?P<basic>authorization\W{0,6}basic)\s+[A-Za-z0-9+/_=-]{1,1024}", re.I)


def mask_argument(text: str) -> str:
    """``text`` (one URL-ish argument, parseable or not) with its password replaced by ``***``."""
    prefix, sep, rest = text.partition("://")
    if sep:
        prefix += sep
    else:
        prefix, rest = "", text
    userinfo, at, hostport = rest.rpartition("@")
    if at:
        login, colon, _ = userinfo.partition(":")
        # With a raw '@' in the password and the host forgotten, the "host" is the password's tail.
        shown = hostport if _HOST_PORT.fullmatch(hostport) else MASK
        return f"{prefix}{login}:{MASK}@{shown}" if colon else f"{prefix}{userinfo}@{shown}"
    # No '@': anything after the host that is not ':port' may be a password (``host:port:login:
    # password``, or ``http://alice:S3cr3t`` with the host forgotten).
    if hostport.startswith("["):
        end = hostport.find("]") + 1
        host, tail = (hostport[:end], hostport[end:]) if end else (hostport, "")
    else:
        host, colon, tail = hostport.partition(":")
        tail = colon + tail
    port, _, more = tail[1:].partition(":")
    if not tail or (_PORT.fullmatch(port) and not more):
        return text
    return f"{prefix}{host}:{port}:{MASK}" if _PORT.fullmatch(port) else f"{prefix}{host}:{MASK}"


def redact(text: str) -> str:
    """Mask the password of any ``scheme://login:password@`` and any ``Basic`` credential in ``text``."""
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['login']}:{MASK}@", text)
    return _BASIC.sub(lambda m: f"{m['basic']} {MASK}", text)
