"""The rules for each field of a proxy, shared by URLs and CSV rows (pure: text in, value out).

Rules:
1. Refuse what a database or a probe cannot use, with ``ProxyParseError(field, what)``: control
   characters and bytes that are not UTF-8 anywhere (PostgreSQL refuses NUL), text fields over
   255 characters (the database's column width), host names over 253 characters or with labels
   over 63, ports that are not ASCII digits in 1-65535, ``%`` that is not a percent-escape, and
   percent-escapes that do not decode to UTF-8.
2. Normalise what is accepted, so one proxy has one spelling: scheme and host name lower-case,
   IPv6 compressed and lower-case (``[0:0::1]`` is ``[::1]``), IPv4 in dotted-quad form.
3. A message never quotes a value other than a URL's scheme: a mistyped URL can put a password
   where the port or the host belongs (``http://alice:S3cr3t``, or a raw ``@`` in a password
   with the host forgotten). The file and line, or the masked argument, say where.
4. ``split_url`` does not use ``urlsplit``: in a proxy URL the credentials run from ``scheme://``
   to the *last* ``@``, so a raw ``/``, ``?``, ``#``, ``@`` or ``:`` in a password is taken as
   part of it instead of turning the rest into a path or a port.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

from .errors import ProxyParseError

# scheme -> anti-captcha's proxyType. https:// is TLS to the proxy itself; still an HTTP proxy.
SCHEMES: dict[str, str] = {
    "http": "http",
    "https": "http",
    "socks4": "socks4",
    "socks4a": "socks4",
    "socks5": "socks5",
    "socks5h": "socks5",
}
# The reverse, for CSV ``type`` columns that follow anti-captcha's proxyType.
TYPE_ALIASES: dict[str, str] = {**{s: s for s in SCHEMES}, "socks": "socks5"}
DEFAULT_PORTS = {"http": 8080, "https": 443}

MAX_FIELD = 255  # characters in a login, password, label or tag: the database's String(255)
MAX_HOST = 253  # RFC 1035, without the optional trailing dot
MAX_HOST_LABEL = 63
MAX_KEY = 512  # Proxy.key (the URL without its password) is a String(512) column

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # control characters, undecodable bytes
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_SCHEME_LIKE = re.compile(r"[a-z][a-z0-9+.-]{0,15}")


class UrlParts(NamedTuple):
    scheme: str
    host: str
    port: int
    login: str | None
    password: str | None


def shown(text: str, limit: int = 40) -> str:
    """``repr`` of a value for a message, cut to ``limit`` characters."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def check_text(field: str, text: str, limit: int = MAX_FIELD) -> str:
    """Refuse text a database cannot store or a probe cannot send: too long, or unprintable."""
    if len(text) > limit:
        raise ProxyParseError(field, f"is {len(text)} characters long; the limit is {limit}")
    bad = _UNPRINTABLE.search(text)
    if bad:
        char = bad.group()
        if "\ud800" <= char <= "\udfff":
            raise ProxyParseError(field, f"is not UTF-8 text (byte {ord(char) - 0xDC00:#04x} at position {bad.start() + 1})")
        raise ProxyParseError(field, f"contains the control character U+{ord(char):04X} at position {bad.start() + 1}")
    return text


def parse_scheme(text: str, *, from_url: bool = False) -> str:
    """A scheme or anti-captcha proxyType. Only a URL's scheme (the letters before ``://``) is
    quoted in the message: a CSV ``type`` cell may hold anything, even a password's tail."""
    scheme = text.strip().lower()
    if scheme in TYPE_ALIASES:
        return TYPE_ALIASES[scheme]
    what = f"{shown(text.strip())} is not" if from_url and _SCHEME_LIKE.fullmatch(scheme) else "is not"
    raise ProxyParseError("type", f"{what} a proxy type (known: {', '.join(SCHEMES)})")


def parse_port(text: str) -> int:
    text = str(text).strip()
    if not text:
        raise ProxyParseError("port", "is empty")
    check_text("port", text, limit=len(text))  # control characters only; the length is the range check below
    if not (text.isascii() and text.isdigit()):
        raise ProxyParseError("port", "is not a number (ASCII digits, 1-65535)")
    digits = text.lstrip("0")
    if len(digits) > 5 or not 1 <= int(digits or "0") <= 65535:
        raise ProxyParseError("port", "is outside 1-65535")
    return int(digits)


def parse_host(text: str) -> str:
    """An IPv4 or IPv6 address (brackets optional) or a host name, normalised."""
    host = text.strip()
    if len(host) > MAX_HOST + 2:  # room for a trailing dot or IPv6 brackets
        raise ProxyParseError("address", f"is {len(host)} characters long; a host name is at most {MAX_HOST}")
    check_text("address", host)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ProxyParseError("address", "is empty")
    if ":" in host:
        return _parse_ipv6(host)
    return _parse_host_name(host)


def _parse_ipv6(host: str) -> str:
    if "%" in host:
        raise ProxyParseError("address", "IPv6 zone ids (%eth0) are not supported")
    try:
        return ipaddress.IPv6Address(host).compressed
    except ValueError:
        raise ProxyParseError("address", "is not a valid IPv6 address") from None


def _parse_host_name(host: str) -> str:
    name = host.lower()
    if not name.isascii():
        raise ProxyParseError("address", "is not ASCII: write an international name in its xn-- form")
    if not _HOST_NAME.fullmatch(name):
        raise ProxyParseError("address", "is not a host name or IP address (letters, digits, '-', '_' and dots)")
    labels = name.rstrip(".").split(".")
    if len(name.rstrip(".")) > MAX_HOST:
        raise ProxyParseError("address", f"is {len(name.rstrip('.'))} characters long; a host name is at most {MAX_HOST}")
    if any(len(label) > MAX_HOST_LABEL for label in labels):
        raise ProxyParseError("address", f"has a label over {MAX_HOST_LABEL} characters (between dots)")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):  # ends in a number: it must be an IPv4 address (WHATWG URL)
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise ProxyParseError("address", "is not a valid IPv4 address") from None
    return name


def parse_credential(field: str, text: str, *, percent_encoded: bool) -> str | None:
    """A login or password; ``None`` when empty. URLs percent-encode them, CSV columns do not."""
    if percent_encoded and "%" in text:
        if _BAD_ESCAPE.search(text):
            raise ProxyParseError(field, "has a '%' that does not start a percent-escape (write %25 for a literal %)")
        try:
            text = unquote_to_bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ProxyParseError(field, "has percent-escapes that do not decode to UTF-8 text") from None
    return check_text(field, text) or None


def parse_tags(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    tags = frozenset(t.strip() for t in text.replace(";", ",").split(",") if t.strip())
    for tag in tags:
        check_text("tags", tag)
    return tags


def parse_label(text: str | None) -> str | None:
    return check_text("label", text) if text else None


def split_url(text: str) -> UrlParts:
    """``scheme://[login[:password]@]host[:port][/]``; no scheme means ``http://``, and then
    the port is required (``host:port``): only a URL that says ``http://`` gets port 8080."""
    text = text.strip()
    if not text:
        raise ProxyParseError("url", "is empty")
    scheme_text, sep, rest = text.partition("://")
    if not sep:
        scheme_text, rest = "http", text
    scheme = parse_scheme(scheme_text, from_url=True)
    userinfo, at, hostport = rest.rpartition("@")
    hostport = hostport[:-1] if hostport.endswith("/") else hostport
    if any(c in hostport for c in "/?#"):
        raise ProxyParseError("url", "a proxy URL has no path, query or fragment")
    login = password = None
    if at:
        login_text, colon, password_text = userinfo.partition(":")
        login = parse_credential("login", login_text, percent_encoded=True)
        password = parse_credential("password", password_text, percent_encoded=True) if colon else None
        if password is not None and login is None:
            raise ProxyParseError("login", "a password was given without a login")
    host_text, port_text = _split_host_port(hostport)
    host = parse_host(host_text)
    if port_text is None:
        if not sep:  # a bare word (a mistyped file name, a line of garbage) is not a proxy
            raise ProxyParseError("port", "is missing: write host:port, or a URL such as http://host")
        if scheme not in DEFAULT_PORTS:
            raise ProxyParseError("port", f"is missing (no default port for {scheme}://)")
        return UrlParts(scheme, host, DEFAULT_PORTS[scheme], login, password)
    return UrlParts(scheme, host, parse_port(port_text), login, password)


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ProxyParseError("address", "an IPv6 address opened with '[' has no closing ']'")
        after = hostport[end + 1 :]
        if after and not after.startswith(":"):
            raise ProxyParseError("address", "only ':port' may follow an IPv6 address in brackets")
        return hostport[: end + 1], (after[1:] if after else None)
    if hostport.count(":") > 1:
        if hostport.count(":") == 3 and not _is_ipv6(hostport):
            raise ProxyParseError("address", "looks like host:port:login:password; in a proxy URL they go as login:password@host:port")
        raise ProxyParseError("address", "has more than one ':'; an IPv6 address goes in brackets, as in [2001:db8::1]:1080")
    host, colon, port = hostport.partition(":")
    return host, (port if colon else None)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True
