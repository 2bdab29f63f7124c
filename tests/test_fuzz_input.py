"""Fuzzing proxy input: the URL parser and the CSV reader raise nothing but their documented
errors, and every value they accept round-trips (parse -> url -> parse) and into SQLite and
PostgreSQL through the real sync on a migrated database.

Documented errors: ``ProxyParseError`` from ``parse_proxy_url``/``make_proxy``; from the CSV
reader only ``ProxycheckError`` for the file as a whole (unreadable, UTF-16, bad header).
Each test is bounded by ``max_examples`` so the suite stays a few seconds per test.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from proxycheck.errors import ProxycheckError, ProxyParseError
from proxycheck.fields import TYPE_ALIASES, parse_credential, parse_host, parse_label, parse_tags
from proxycheck.proxy import Proxy, make_proxy, parse_proxy_url
from proxycheck.sources import load_inputs, read_csv_file, read_csv_text
from proxycheck.store import sync_source
from proxycheck.store._rows import PROXY_COLUMNS, proxy_from_row
from proxycheck.store.models import ProxyRow

from store.helpers import NOW

# Characters that broke parsers before: URL delimiters, a lone surrogate (a byte that is not
# UTF-8), NUL and other controls, a non-ASCII digit, a BOM, right-to-left override, an emoji.
NASTY = list("/#?@:%[]\\ ,;\"'\t\r\n\x00\x01\x1f\x7f\x85\u00b2\u0660\ufeff\u202e\U0001f600\udcff")
nasty_text = st.text(st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=40)
with_a_nasty_char = st.builds(lambda a, c, b: a + c + b, st.text(max_size=8), st.sampled_from(NASTY), st.text(max_size=8))
credential = st.one_of(
    nasty_text,
    with_a_nasty_char,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=260),
)
host = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded.upper()),  # normalised on the way in
    st.from_regex(r"[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,5}\.?", fullmatch=True),
    st.integers(250, 300).map(lambda n: "h" * (n % 60) + ".a" * (n // 2)),
    nasty_text,
)
port = st.one_of(st.integers(-1, 70000).map(str), st.sampled_from(["\u00b2", "08080", "", " 80", "9" * 30]), nasty_text)
scheme = st.one_of(st.sampled_from(["http", "HTTPS", "socks4", "socks4a", "socks5", "socks5h", "socks"]), nasty_text)
FAST = settings(max_examples=300, deadline=None)
DATABASE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ROW_ERROR = re.compile(r"[^\n]*:\d+: (row|type|address|port|login|password|tags|label|url): [^\n]+")


@st.composite
def urls(draw) -> tuple[str, str | None, str | None]:
    """A URL as a user might write it, and the login and password it means (when encoded)."""
    login = draw(st.none() | credential)
    password = draw(st.none() | credential)
    encode = draw(st.booleans())
    enc = (lambda s: quote(s, safe="", errors="surrogatepass")) if encode else (lambda s: s)
    userinfo = ""
    if login is not None:
        userinfo = enc(login) + (f":{enc(password)}" if password is not None else "") + "@"
    h = draw(host)
    h = f"[{h}]" if ":" in h and draw(st.booleans()) else h
    p = draw(st.none() | port)
    text = f"{draw(scheme)}://{userinfo}{h}" + (f":{p}" if p is not None else "") + draw(st.sampled_from(["", "/", "/x"]))
    return text, (login if encode else None), (password if encode else None)


def parsed(text: str) -> Proxy | None:
    try:
        return parse_proxy_url(text)
    except ProxyParseError as exc:
        assert "\n" not in str(exc)
        return None


def assert_round_trips(p: Proxy) -> None:
    again = parse_proxy_url(p.url, tags=p.tags, label=p.label)
    assert again == p and again.password == p.password and again.key == p.key
    assert parse_proxy_url(p.masked_url).key == p.key


@FAST
@given(st.one_of(nasty_text, st.text()))
def test_any_text_as_a_url(text):
    p = parsed(text)
    if p is not None:
        assert_round_trips(p)


@FAST
@given(urls())
def test_urls_round_trip(case):
    text, login, password = case
    p = parsed(text)
    if p is None:
        return
    assert_round_trips(p)
    if login:  # percent-encoded credentials come back exactly (never U+FFFD)
        assert p.username == login
        assert p.password == (password or None)


@st.composite
def csv_texts(draw) -> str:
    header = draw(st.sampled_from(["type,address,port,login,password,tags,label", "url,tags,label", "url", "type,address,port"]))
    cells = st.one_of(nasty_text, host, port, scheme, credential, st.sampled_from(["http", "1.2.3.4", "80", "[::1]"]))
    rows = draw(st.lists(st.lists(cells, max_size=8), max_size=8))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=end)
    for row in rows:
        if draw(st.booleans()):
            writer.writerow(row)
        else:  # not quoted: what a careless export writes
            out.write(",".join(row) + end)
    return draw(st.sampled_from(["", "\ufeff"])) + header + end + out.getvalue()


def assert_csv_result(loaded, name: str) -> None:
    for err in loaded.errors:
        assert ROW_ERROR.fullmatch(str(err)) and str(err).startswith(f"{name}:"), str(err)
    for p in loaded.proxies:
        assert_round_trips(p)


@settings(max_examples=120, deadline=None)
@given(csv_texts())
def test_csv_text(text):
    assert_csv_result(read_csv_text(text, "f.csv"), "f.csv")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([b"url\n", b"type,address,port\r", b""]))
def test_csv_bytes(data, header):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.csv"
        path.write_bytes(header + data)
        try:
            loaded = read_csv_file(path)
        except ProxycheckError as exc:
            assert type(exc) is ProxycheckError and str(exc).startswith(f"{path}") and "\n" not in str(exc)
            return
    assert_csv_result(loaded, str(path))


@st.composite
def accepted_proxies(draw) -> Proxy:
    """Proxies the parser accepts, from URLs and from CSV fields, every field as nasty as the
    rules allow (a field the rules refuse is left out, so most examples reach the database)."""

    def field(strategy, check) -> str:
        value = draw(strategy)
        try:
            check(value)
        except ProxyParseError:
            return ""
        return value

    s = draw(st.sampled_from(sorted(TYPE_ALIASES)))
    h = field(host, parse_host) or "127.0.0.1"
    login = field(credential, lambda v: parse_credential("login", v, percent_encoded=False))
    password = field(credential, lambda v: parse_credential("password", v, percent_encoded=False)) if login else ""
    tags = ",".join(field(credential, parse_tags) for _ in range(draw(st.integers(0, 3))))
    label = field(credential, parse_label)
    port = str(draw(st.integers(1, 65535)))
    try:
        if draw(st.booleans()):
            return make_proxy(s, h, port, login, password, tags, label)
        userinfo = f"{quote(login, safe='')}:{quote(password, safe='')}@" if login else ""
        address = f"[{h}]" if ":" in h else h
        return parse_proxy_url(f"{s}://{userinfo}{address}:{port}", tags=parse_tags(tags), label=label or None)
    except ProxyParseError as exc:
        assert exc.field == "login" and "without its password" in exc.message  # the key's length limit
        return make_proxy(s, h, port, tags=tags, label=label)


@DATABASE
@given(accepted_proxies())
def test_accepted_proxies_store_and_read_back(writer, proxy):
    """``db_url`` runs this on SQLite and on PostgreSQL (which refuses NUL and over-long text)."""
    sync_source(writer, "csv:fuzz", [proxy], NOW)
    with writer.connect() as conn:
        row = conn.execute(select(*PROXY_COLUMNS).where(ProxyRow.key == proxy.key)).one()
    back = proxy_from_row(row)
    assert back == proxy and back.password == proxy.password


EXTREMES = [
    # The longest of everything the rules accept.
    make_proxy("socks5h", ".".join(["a" * 63] * 3) + ".b" * 31, "65535", "l" * 230, "\U0001f600" * 255,
               ",".join(["\u202e" * 255, "t" * 255]), "\ufeff" * 255),
    parse_proxy_url("http://" + "%C3%AF" * 81 + ":" + "%F0%9F%98%80" * 255 + "@[FFFF:0::0:ffff]:1"),
    make_proxy("https", "[0:0::1]", "443", "us@er:x", "/#?@:%[] ", "日本", "\u00b2"),
]


@pytest.mark.parametrize("proxy", EXTREMES, ids=["longest-fields", "longest-key", "delimiters"])
def test_extremes_store_and_read_back(writer, proxy):
    test_accepted_proxies_store_and_read_back.hypothesis.inner_test(writer, proxy)


@pytest.mark.parametrize(
    "fields",
    [
        ("http", "1.2.3.4", "80", "a\x00b", "pw"),  # PostgreSQL refuses NUL in text
        ("http", "1.2.3.4", "80", "ab", "p\udcffw"),  # a byte that is not UTF-8
        ("http", "1.2.3.4", "80", "ab", "p" * 256),  # over String(255)
        ("http", "h" * 254, "80", "", ""),
        ("http", "1.2.3.4", "80", "", "", "a\x00"),
        ("http", "1.2.3.4", "80", "", "", "", "l" * 256),
    ],
)
def test_what_a_database_cannot_store_is_refused(fields):
    with pytest.raises(ProxyParseError):
        make_proxy(*fields)


SHAPES = [
    "http://alice:{pw}@[::1",
    "http://alice:{pw}@127.0.0.1:99999",
    "http://alice:{pw}@127.0.0.1:\u00b2",
    "socks5://alice:{pw}@127.0.0.1",
    "http://alice:{pw}@127.0.0.1:80/x",
    "http://alice:{pw}@{host}:80",
    "127.0.0.1:80:alice:{pw}",
    "http://alice:{pw}",  # the host forgotten
]


@FAST
@given(st.sampled_from(SHAPES), credential, credential, host, st.booleans())
def test_no_error_quotes_a_password(shape, before, after, h, encode):
    """The pure half of tests/test_no_password.py: any password, any shape, any error path."""
    password = before + "Zq7Xw" + after
    if "@" in password and "{pw}" in shape.split("@")[-1]:
        return  # a raw '@' with the host forgotten: the tail *is* a host by the URL's own rules
    typed = quote(password, safe="", errors="surrogatepass") if encode else password
    text = shape.format(pw=typed, host=h)
    out = io.StringIO()
    csv.writer(out).writerows([["url"], [text]])
    rows = read_csv_text(out.getvalue(), "f.csv").errors
    out = io.StringIO()
    csv.writer(out).writerows([["type", "address", "port", "login", "password"], ["http", h, "99999", "alice", password]])
    fields = read_csv_text(out.getvalue(), "g.csv").errors
    try:
        load_inputs([text], [])
        arguments = ""
    except ProxycheckError as exc:
        arguments = str(exc)
    for message in [arguments, *map(str, rows), *map(str, fields)]:
        assert "Zq7Xw" not in message, message


def test_a_multiline_cell_does_not_quote_its_tail():
    """A quoted password with a line break splits into two rows (cells never hold line breaks);
    the second row's 'type' is the password's tail and must not be quoted."""
    loaded = read_csv_text('type,address,port,login,password\nhttp,1.2.3.4,80,alice,"pa\nsocks9,Zq7Xw"\n', "m.csv")
    assert loaded.proxies == [] and len(loaded.errors) == 2
    assert not any("socks9" in str(e) or "Zq7Xw" in str(e) for e in loaded.errors)
