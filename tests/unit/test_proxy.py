"""Proxy URL parsing and masking (pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxycheck.errors import ProxyParseError
from proxycheck.proxy import Proxy, parse_proxy_url


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "user", "password"),
    [
        ("http://1.2.3.4:3128", "http", "1.2.3.4", 3128, None, None),
        ("1.2.3.4:3128", "http", "1.2.3.4", 3128, None, None),
        ("https://proxy.example:443", "https", "proxy.example", 443, None, None),
        ("socks4://10.0.0.1:1080", "socks4", "10.0.0.1", 1080, None, None),
        ("socks5h://u:p@10.0.0.1:1080", "socks5h", "10.0.0.1", 1080, "u", "p"),
        ("http://us%40er:p%3Ass%40w@1.2.3.4:8080", "http", "1.2.3.4", 8080, "us@er", "p:ss@w"),
        ("socks5://[2001:db8::1]:1080", "socks5", "2001:db8::1", 1080, None, None),
        ("HTTP://Proxy.Example:80", "http", "proxy.example", 80, None, None),
        # Normalised: one proxy, one spelling.
        ("http://[0:0::1]:80", "http", "::1", 80, None, None),
        ("http://[2001:DB8:0::A]:80", "http", "2001:db8::a", 80, None, None),
        ("http://1.2.3.4:0080/", "http", "1.2.3.4", 80, None, None),
        ("http://u:@1.2.3.4:80", "http", "1.2.3.4", 80, "u", None),
        # In a proxy URL the credentials run to the last '@': raw / ? # @ : are part of the password.
        ("http://alice:pa/ss?w#d@1.2.3.4:80", "http", "1.2.3.4", 80, "alice", "pa/ss?w#d"),
        ("http://alice:p@ss:w@1.2.3.4:80", "http", "1.2.3.4", 80, "alice", "p@ss:w"),
        ("http://al%C3%AFce:%E2%82%AC@my_proxy.example.:80", "http", "my_proxy.example.", 80, "alïce", "€"),
    ],
)
def test_parse_valid(text, scheme, host, port, user, password):
    p = parse_proxy_url(text)
    assert (p.scheme, p.host, p.port, p.username, p.password) == (scheme, host, port, user, password)


@pytest.mark.parametrize(
    ("text", "field", "said"),
    [
        ("ftp://1.2.3.4:21", "type", "'ftp' is not a proxy type"),
        ("http://1.2.3.4:99999", "port", "is outside 1-65535"),
        ("http://1.2.3.4:0", "port", "is outside 1-65535"),
        ("http://1.2.3.4:" + "9" * 5000, "port", "is outside 1-65535"),
        ("http://1.2.3.4:abc", "port", "is not a number"),
        ("http://1.2.3.4:\u00b2", "port", "is not a number"),  # superscript two: a digit, not ASCII
        ("http://1.2.3.4:\u0668\u0660", "port", "is not a number"),  # Arabic-Indic 80
        ("http://1.2.3.4:80\x00", "port", "control character U+0000"),
        ("socks5://1.2.3.4", "port", "is missing"),
        ("http://1.2.3.4:", "port", "is empty"),
        ("http://1.2.3.4:80/path", "url", "no path"),
        ("http://1.2.3.4:80?x", "url", "no path"),
        ("http://[zz::1]:80", "address", "not a valid IPv6 address"),
        ("http://[::1", "address", "no closing ']'"),
        ("http://[::1]x:80", "address", "only ':port'"),
        ("http://[fe80::1%25eth0]:80", "address", "zone ids"),
        ("http://::1:80", "address", "in brackets"),
        ("1.2.3.4:80:alice:pw", "address", "looks like host:port:login:password"),
        ("http://" + "a" * 300 + ":80", "address", "is 300 characters long; a host name is at most 253"),
        ("http://" + ".".join(["a" * 60] * 4) + ".bbbbbbbbbb:80", "address", "is 254 characters long"),
        ("http://" + "a" * 64 + ".example:80", "address", "label over 63"),
        ("http://a..b:80", "address", "not a host name"),
        ("http://pr\x00xy:80", "address", "control character U+0000"),
        ("http://pr\x7fxy:80", "address", "control character U+007F"),
        ("http://прокси.рф:80", "address", "xn--"),
        ("http://010.0.0.1:80", "address", "not a valid IPv4 address"),
        ("http://1.2.3:80", "address", "not a valid IPv4 address"),
        ("http://0x7f.1:80", "address", "not a valid IPv4 address"),
        ("http://u:%ff@1.2.3.4:80", "password", "do not decode to UTF-8"),
        ("http://u:50%off@1.2.3.4:80", "password", "not start a percent-escape"),
        ("http://u:a%00b@1.2.3.4:80", "password", "control character U+0000"),
        ("http://u:" + "p" * 256 + "@1.2.3.4:80", "password", "256 characters long; the limit is 255"),
        ("http://%ZZ:pw@1.2.3.4:80", "login", "not start a percent-escape"),
        ("http://:pw@1.2.3.4:80", "login", "without a login"),
        ("http://" + "%C3%AF" * 90 + "@" + ".".join(["a" * 60] * 4) + ":80", "login", "without its password would be"),
        ("", "url", "is empty"),
        ("proxyhost", "port", "is missing: write host:port"),  # a bare word is not http://proxyhost:8080
        ("bob:pw@1.2.3.4", "port", "is missing: write host:port"),
    ],
)
def test_parse_invalid_names_the_field(text, field, said):
    with pytest.raises(ProxyParseError) as info:
        parse_proxy_url(text)
    assert info.value.field == field
    assert said in info.value.message


def test_password_never_printed():
    p = parse_proxy_url("http://bob:s3cret@1.2.3.4:8080")
    for shown in (str(p), repr(p), p.masked_url, p.key, f"{p}"):
        assert "s3cret" not in shown
    assert "s3cret" in p.url
    assert p.masked_url == "http://bob:***@1.2.3.4:8080"


@pytest.mark.parametrize(
    "text",
    [
        "http://bob:s3cret@1.2.3.4:8080/x",
        "http://bob:s3cret@[::1",  # urlsplit raises on this one
        "http://bob:s3cret",  # the password lands where the port belongs
        "http://bob:123456",
        "1.2.3.4:80:bob:s3cret",
        "http://bob:s3cret@1.2.3.4:99999",
        "http://bob:s3cret%@1.2.3.4:80",
    ],
)
def test_error_message_never_quotes_the_password(text):
    password = text.split("bob:")[1].split("@")[0].rstrip("%")
    with pytest.raises(ProxyParseError) as info:
        parse_proxy_url(text)
    assert password not in str(info.value)


def test_spellings_of_one_proxy_are_one_proxy():
    spellings = ["http://[::1]:80", "http://[0:0::1]:80", "http://[0000:0000:0000:0000:0000:0000:0000:0001]:80",
                 "HTTP://[::1]:080/"]
    assert len({parse_proxy_url(s).key for s in spellings}) == 1


def test_key_ignores_password_and_tags():
    a = parse_proxy_url("http://bob:one@1.2.3.4:8080")
    b = Proxy("http", "1.2.3.4", 8080, "bob", "two", frozenset({"us"}))
    assert a.key == b.key


@pytest.mark.parametrize(
    ("host", "fragment"),
    [("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("169.254.1.1", "link-local"), ("proxy.example", "host name"),
     ("203.0.113.7", "documentation address"), ("2001:db8::10", "documentation address")],
)
def test_address_warnings(host, fragment):
    assert any(fragment in w for w in Proxy("http", host, 80).address_warnings())


def test_public_address_has_no_warning():
    assert Proxy("http", "8.8.8.8", 80).address_warnings() == []


@pytest.mark.parametrize(
    ("host", "example"),
    [("192.0.2.1", True), ("198.51.100.255", True), ("203.0.113.7", True), ("2001:db8::10", True),
     ("203.0.114.1", False), ("8.8.8.8", False), ("2001:4860::8888", False), ("proxy.example", False)],
)
def test_documentation_example(host, example):
    """What the daemon's source sync warns about (the proxies of proxies.example.csv), from DOCUMENTATION_NETS."""
    assert Proxy("http", host, 80).documentation_example is example


_credential = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)


@given(
    scheme=st.sampled_from(["http", "https", "socks4", "socks5", "socks5h"]),
    ip=st.ip_addresses().map(str),
    port=st.integers(1, 65535),
    user=_credential,
    password=_credential,
)
def test_url_round_trip(scheme, ip, port, user, password):
    p = Proxy(scheme, ip, port, user, password)
    again = parse_proxy_url(p.url)
    assert (again.scheme, again.host, again.port, again.username, again.password) == (scheme, ip, port, user, password)
    # The masked URL carries everything but the password, which becomes "***" (a password such as
    # "@" or "0" may still occur as a substring of the rest, so compare parsed fields, not text).
    masked = parse_proxy_url(p.masked_url)
    assert (masked.scheme, masked.host, masked.port, masked.username, masked.password) == (scheme, ip, port, user, "***")
