"""The Proxy value: building it from URLs and CSV fields, its masked forms, and anti-captcha's task fields.

Rules:
1. A ``Proxy`` never shows its password: ``str()``, ``repr()`` and ``masked_url`` print ``***``.
   Only ``url`` (for handing to an HTTP client) carries it.
2. Identity (``key``) is scheme, host, port and login — not the password, so a changed password
   updates the same proxy instead of creating a new one.
3. Parsing errors name the field that is wrong (``ProxyParseError.field``) and never quote a
   password; the rules for each field, and how they are normalised, live in ``fields.py``.
   ``parse_proxy_url`` and ``make_proxy`` (CSV rows) are the only ways in from user input.
4. What the latest check learnt (``exit_ip``, ``latency_ms``, ``resolved_ip``) rides along on
   proxies handed out by ``get_healthy_proxy()``; it is not part of equality or the hash.
5. Converters give each client its own shape (``as_anticaptcha``, ``as_2captcha``,
   ``httpx_proxy``, ``requests_proxies``); they refuse what the client would mangle rather than
   send it silently wrong.
6. What a captcha service's workers cannot reach is refused where the proxy is handed to one:
   ``as_anticaptcha`` and ``as_2captcha`` raise for an address that ``ADDRESS_RULES`` names
   (loopback, link-local, documentation, private or reserved), each refusal quoting its rule and
   source (docs/proxy-input.md), unless the caller opts in with ``local_test=True`` (a test
   against local proxies). ``address_warnings`` reads the same table.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .errors import ProxyParseError
from .fields import (  # noqa: F401 - parse_host, parse_port, parse_scheme, parse_tags are re-exported
    MAX_KEY,
    SCHEMES,
    check_text,
    parse_credential,
    parse_host,
    parse_label,
    parse_port,
    parse_scheme,
    parse_tags,
    split_url,
)

# RFC 5737 and RFC 3849: the addresses of examples, like the ones in proxies.example.csv.
DOCUMENTATION_NETS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def in_documentation_net(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address of the examples: it can never be a working proxy."""
    return any(ip in net for net in DOCUMENTATION_NETS if net.version == ip.version)


ANTICAPTCHA_RULE = ('anti-captcha\'s proxyAddress takes "Proxy IP address ipv4/ipv6. No host names or IP addresses '
                    'from local networks." (https://anti-captcha.com/apidoc/task-types/RecaptchaV2Task)')


@dataclass(frozen=True)
class AddressRule:
    """One kind of address a captcha service's workers cannot reach (rule 6)."""

    name: str  # stable: "loopback", "link_local", "documentation", "private"
    what: str  # "a loopback address"
    source: str  # where the range is defined

    def applies(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.name == "loopback":
            return ip.is_loopback
        if self.name == "link_local":
            return ip.is_link_local
        if self.name == "documentation":
            return in_documentation_net(ip)
        return not ip.is_global  # private (RFC 1918, RFC 4193) and every other special-purpose range


# First match wins: 127.0.0.1 is also "not global", but "loopback" says more.
ADDRESS_RULES = (
    AddressRule("loopback", "a loopback address", "RFC 1122 section 3.2.1.3, RFC 4291 section 2.5.3"),
    AddressRule("link_local", "a link-local address", "RFC 3927, RFC 4291 section 2.5.6"),
    AddressRule("documentation", "a documentation address (for examples only)", "RFC 5737, RFC 3849"),
    AddressRule("private", "a private or reserved address",
                "RFC 1918, RFC 4193, RFC 6598 and IANA's special-purpose address registries"),
)


def address_rule(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> AddressRule | None:
    """The first rule of ``ADDRESS_RULES`` that ``ip`` breaks; None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        ip = ip.ipv4_mapped
    return next((rule for rule in ADDRESS_RULES if rule.applies(ip)), None)


# scheme -> 2captcha's ``proxytype`` (in.php / 2captcha-python ``type``).
TWOCAPTCHA_TYPES: dict[str, str] = {
    "http": "HTTP",
    "https": "HTTPS",
    "socks4": "SOCKS4",
    "socks4a": "SOCKS4",
    "socks5": "SOCKS5",
    "socks5h": "SOCKS5",
}


@dataclass(frozen=True)
class Proxy:
    scheme: str
    host: str  # an IP (IPv6 without brackets) or a host name, as the user gave it
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tags: frozenset[str] = frozenset()
    label: str | None = None
    # Facts from the latest successful check (None when not known); not part of identity.
    exit_ip: str | None = field(default=None, compare=False)
    latency_ms: float | None = field(default=None, compare=False)
    resolved_ip: str | None = field(default=None, compare=False)  # the host's IP at check time

    # -- forms -------------------------------------------------------------------------------
    @property
    def host_for_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _url(self, password: str | None) -> str:
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if password is not None:
                auth += ":" + password
            auth += "@"
        return f"{self.scheme}://{auth}{self.host_for_url}:{self.port}"

    @property
    def url(self) -> str:
        """The full URL, password included (percent-encoded). Hand it to clients, never print it."""
        pw = None if self.password is None else quote(self.password, safe="")
        return self._url(pw)

    @property
    def masked_url(self) -> str:
        return self._url(None if self.password is None else "***")

    @property
    def key(self) -> str:
        """Identity in storage: everything but the password, tags and label."""
        return self._url(None)

    @property
    def address(self) -> str:
        return f"{self.host_for_url}:{self.port}"

    @property
    def proxy_type(self) -> str:
        """anti-captcha's ``proxyType``: ``http``, ``socks4`` or ``socks5``."""
        return SCHEMES[self.scheme]

    def __str__(self) -> str:
        return self.masked_url

    @property
    def documentation_example(self) -> bool:
        """Its host is an IP of the documentation ranges (``DOCUMENTATION_NETS``): never a working proxy."""
        try:
            return in_documentation_net(ipaddress.ip_address(self.host))
        except ValueError:
            return False

    # -- what captcha services and HTTP clients take ---------------------------------------------
    @property
    def ip(self) -> str | None:
        """The proxy's IP: ``host`` when it is an IP literal, else ``resolved_ip`` (may be None)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return self.resolved_ip
        return self.host

    def as_anticaptcha(self, *, local_test: bool = False) -> dict[str, Any]:
        """anti-captcha's (and CapMonster Cloud's) task proxy fields, to merge into a task::

            {"proxyType": "http", "proxyAddress": "8.8.4.4", "proxyPort": 8080,
             "proxyLogin": "user", "proxyPassword": "secret"}

        ``proxyAddress`` is an IP (anti-captcha refuses host names): the host itself, or the IP it
        resolved to at check time. Login and password keys are left out when there are none.
        A loopback, link-local, documentation, private or reserved address is refused (rule 6)
        unless ``local_test`` is true.
        """
        ip = self.ip
        if ip is None:
            raise ProxyParseError(
                "address",
                f"{self.host!r} is a host name that no check has resolved yet, and anti-captcha "
                "accepts IP addresses only: use a proxy from get_healthy_proxy(), or give its IP",
            )
        if not local_test:
            self._refuse_unreachable(ip, "as_anticaptcha", "anti-captcha's")
        fields: dict[str, Any] = {"proxyType": self.proxy_type, "proxyAddress": ip, "proxyPort": self.port}
        if self.username is not None:
            fields["proxyLogin"] = self.username
        if self.password is not None:
            fields["proxyPassword"] = self.password
        return fields

    def as_2captcha(self, *, local_test: bool = False) -> dict[str, str]:
        """2captcha's / rucaptcha's ``in.php`` fields: ``proxy`` (``login:password@ip:port``) and
        ``proxytype`` (HTTP, HTTPS, SOCKS4, SOCKS5). The address is the IP when one is known
        (2captcha also takes a host name). A loopback, link-local, documentation, private or
        reserved IP is refused (rule 6) unless ``local_test`` is true.

        2captcha does not escape the credentials, so a ``:`` or ``@`` in them is refused."""
        for name, value in (("login", self.username), ("password", self.password)):
            if value is not None and (":" in value or "@" in value):
                raise ProxyParseError(
                    name, "contains ':' or '@', which 2captcha's login:password@ip:port cannot carry"
                )
        ip = self.ip or self.host
        if not local_test and self.ip is not None:
            self._refuse_unreachable(ip, "as_2captcha", "2captcha's")
        address = f"[{ip}]:{self.port}" if ":" in ip else f"{ip}:{self.port}"
        auth = ""
        if self.username is not None:
            auth = self.username + (f":{self.password}" if self.password is not None else "") + "@"
        return {"proxy": auth + address, "proxytype": TWOCAPTCHA_TYPES[self.scheme]}

    def _refuse_unreachable(self, ip_text: str, method: str, whose: str) -> None:
        """Rule 6: ``ProxyParseError("address", ...)`` naming the rule and its source."""
        rule = address_rule(ipaddress.ip_address(ip_text))
        if rule is None:
            return
        raise ProxyParseError(
            "address",
            f"{ip_text} is {rule.what} ({rule.source}): {whose} workers connect from the internet and cannot "
            f"reach it, and {ANTICAPTCHA_RULE}. Hand a public proxy to a captcha service, or call "
            f"{method}(local_test=True) for a test against local proxies (docs/proxy-input.md)",
        )

    @property
    def httpx_proxy(self) -> str:
        """For ``httpx.Client(proxy=...)`` (SOCKS needs ``httpx[socks]``): the full URL."""
        return self.url

    @property
    def requests_proxies(self) -> dict[str, str]:
        """For ``requests.get(..., proxies=...)``: both schemes through this proxy."""
        return {"http": self.url, "https": self.url}

    def __repr__(self) -> str:
        return f"Proxy({self.masked_url!r})"

    # -- what anti-captcha will say about the address -------------------------------------------
    def address_warnings(self, resolved_ip: str | None = None) -> list[str]:
        """Warnings for addresses anti-captcha refuses. They never change the verdict."""
        ip_text = resolved_ip or self.host
        warnings: list[str] = []
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            warnings.append(
                f"proxy host {self.host!r} is a host name; anti-captcha wants an IP"
                + (f" (resolved to {resolved_ip})" if resolved_ip else "")
            )
            try:
                ip = ipaddress.ip_address(ip_text)
            except ValueError:
                return warnings
        rule = address_rule(ip)
        if rule is not None:
            warnings.append(f"{ip} is {rule.what}; a captcha service cannot reach it")
        return warnings


def parse_proxy_url(text: str, *, tags: frozenset[str] = frozenset(), label: str | None = None) -> Proxy:
    """Parse ``scheme://[login[:password]@]host:port``; credentials are percent-decoded.

    A URL without a scheme is taken as ``http://`` (the form most proxy lists use). The field
    rules, and how a raw ``@`` or ``/`` in a password is read, are in ``fields.py``.
    """
    parts = split_url(text)
    return _checked(Proxy(*parts, frozenset(tags), label))


def make_proxy(
    scheme: str, address: str, port: str, login: str = "", password: str = "", tags: str = "", label: str = ""
) -> Proxy:
    """A proxy from separate fields as a CSV row gives them (credentials as they are, not encoded)."""
    proxy = Proxy(
        parse_scheme(scheme),
        parse_host(address),
        parse_port(port),
        parse_credential("login", login, percent_encoded=False),
        parse_credential("password", password, percent_encoded=False),
        parse_tags(tags),
        parse_label(label),
    )
    if proxy.password is not None and proxy.username is None:
        raise ProxyParseError("login", "a password was given without a login")
    return _checked(proxy)


def _checked(proxy: Proxy) -> Proxy:
    for tag in proxy.tags:
        check_text("tags", tag)
    parse_label(proxy.label)
    if len(proxy.key) > MAX_KEY:
        raise ProxyParseError(
            "login", f"is too long: the proxy's URL without its password would be {len(proxy.key)} characters (at most {MAX_KEY})"
        )
    return proxy
