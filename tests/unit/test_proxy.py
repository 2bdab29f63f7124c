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
    ],
)
def test_parse_valid(text, scheme, host, port, user, password):
    p = parse_proxy_url(text)
    assert (p.scheme, p.host, p.port, p.username, p.password) == (scheme, host, port, user, password)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("ftp://1.2.3.4:21", "type"),
        ("http://1.2.3.4:99999", "port"),
        ("http://1.2.3.4:abc", "port"),
        ("socks5://1.2.3.4", "port"),
        ("http://1.2.3.4:80/path", "url"),
        ("http://[zz::1]:80", "address"),
        ("", "url"),
    ],
)
def test_parse_invalid_names_the_field(text, field):
    with pytest.raises(ProxyParseError) as info:
        parse_proxy_url(text)
    assert info.value.field == field


def test_password_never_printed():
    p = parse_proxy_url("http://bob:s3cret@1.2.3.4:8080")
    for shown in (str(p), repr(p), p.masked_url, p.key, f"{p}"):
        assert "s3cret" not in shown
    assert "s3cret" in p.url
    assert p.masked_url == "http://bob:***@1.2.3.4:8080"


def test_error_message_masks_password():
    with pytest.raises(ProxyParseError) as info:
        parse_proxy_url("http://bob:s3cret@1.2.3.4:8080/x")
    assert "s3cret" not in str(info.value)


def test_key_ignores_password_and_tags():
    a = parse_proxy_url("http://bob:one@1.2.3.4:8080")
    b = Proxy("http", "1.2.3.4", 8080, "bob", "two", frozenset({"us"}))
    assert a.key == b.key


@pytest.mark.parametrize(
    ("host", "fragment"),
    [("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("169.254.1.1", "link-local"), ("proxy.example", "host name")],
)
def test_address_warnings(host, fragment):
    assert any(fragment in w for w in Proxy("http", host, 80).address_warnings())


def test_public_address_has_no_warning():
    assert Proxy("http", "8.8.8.8", 80).address_warnings() == []


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
