"""Fuzzing the config loader: whatever a TOML file holds, the loader returns valid ``Settings`` or
raises the documented ``ConfigError`` naming the file, never anything else; and whatever it
accepts is usable (every number finite and in its declared range, every URL parsable)."""

from __future__ import annotations

import dataclasses
import math
import string
import typing
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxycheck.config import RELATIONS, SECTIONS, Settings, load_settings, settings_from_dict
from proxycheck.errors import ConfigError
from proxycheck.store.engine import normalize_url

FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

# Everything TOML can hold (no null), weighted towards the edges that broke the loader before.
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 65535, 65536, 86400, 86401]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, -0.0, 1e-300, 1e300, 0.1, 0.9]),
    st.text(max_size=40),
)
urlish = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://"] * 4 + ["https://"] * 4 + ["ftp://", "", "http:", "HTTP://"]),
    st.one_of(st.sampled_from(["judge", "127.0.0.1", "[::1]"]),
              st.sampled_from(["[", "[::1", "a b", "", "x@y", "ü.example"]), st.text(max_size=10)).filter(bool),
    st.sampled_from(["", ":8080", ":0", ":65536", ":99999", ":x", ":\u00b2", ":"]),
    st.sampled_from(["", "/", "/get", "/get", "/?q=1#f", "/a b", "/\x00"]),
)
database_urls = st.one_of(
    st.sampled_from(["", "sqlite://", "sqlite:///x.db", "sqlite:///:memory:", "mysql://h/db", "postgresql://h/db",
                     "postgresql+asyncpg://h/db", "postgres://u:p@h:5432/db", "postgresql://h:x/db", "proxycheck.db"]),
    st.text(max_size=30),
)
values = st.one_of(scalars, urlish, database_urls, st.lists(st.one_of(urlish, scalars), max_size=3),
                   st.dictionaries(st.text(max_size=5), scalars, max_size=2))


def _keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "source_file"]


SECTION_KEYS = {name: _keys(typing.get_type_hints(Settings)[name]) for name in SECTIONS}
TOP_KEYS = [k for k in _keys(Settings) if k not in SECTIONS]


@st.composite
def one_key(draw: st.DrawFn) -> dict:
    """One known key with a value likely for its kind: a value wrong in a subtle way must be
    caught by that key's check, not hidden behind another key's error."""
    section = draw(st.sampled_from(("", "targets", "targets") + SECTIONS))
    name = draw(st.sampled_from(TOP_KEYS if not section else SECTION_KEYS[section]))
    likely = {"": database_urls, "targets": st.one_of(urlish, st.lists(urlish, max_size=3))}.get(section, scalars)
    value = draw(st.one_of(likely, values))
    return {name: value} if not section else {section: {name: value}}


@st.composite
def many_keys(draw: st.DrawFn) -> dict:
    """A parsed TOML document: known and unknown keys, each with any value."""
    doc: dict = {}
    for name in draw(st.lists(st.sampled_from(TOP_KEYS), max_size=2, unique=True)):
        doc[name] = draw(database_urls if name == "database_url" and draw(st.booleans()) else values)
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=4, unique=True)):
        if draw(st.integers(0, 20)) == 0:
            doc[section] = draw(scalars)  # not a table
            continue
        keys = draw(st.lists(st.sampled_from(SECTION_KEYS[section]), max_size=4, unique=True))
        likely = st.one_of(urlish, st.lists(urlish, max_size=3)) if section == "targets" else scalars
        doc[section] = {k: draw(likely if draw(st.booleans()) else values) for k in keys}
        if draw(st.integers(0, 20)) == 0:
            doc[section][draw(st.text(max_size=8))] = draw(scalars)
    if draw(st.integers(0, 20)) == 0:
        doc[draw(st.text(max_size=8))] = draw(values)
    return doc


def assert_usable(s: Settings) -> None:
    """What every accepted configuration promises the rest of proxycheck."""
    hints = typing.get_type_hints
    for section in SECTIONS:
        obj = getattr(s, section)
        for f in dataclasses.fields(obj):
            value, typ = getattr(obj, f.name), hints(type(obj))[f.name]
            if typ in (int, float):
                assert type(value) is typ and math.isfinite(value), (section, f.name, value)
                low, high, above = (f.metadata.get(k) for k in ("low", "high", "above"))
                assert (low is None or value >= low) and (high is None or value <= high), (section, f.name, value)
                assert above is None or value > above, (section, f.name, value)
            elif typ is bool:
                assert type(value) is bool
            elif typ is str or typing.get_origin(typ) is tuple:
                for text in (value,) if typ is str else value:
                    assert isinstance(text, str) and not any(ord(c) < 32 or ord(c) == 127 for c in text)
    for url in (s.targets.judge_url, s.targets.ip_url, s.targets.ssl_url, s.targets.long_get_url,
                s.targets.ban_url, *s.targets.image_urls):
        parts = urlsplit(url)  # what the probes do with them: no ValueError, a host, a real port
        assert parts.hostname and parts.port != 0 and parts.scheme in ("http", "https"), url
        httpx.URL(url)
    for (sa, ka), op, (sb, kb) in RELATIONS:
        a, b = getattr(getattr(s, sa), ka), getattr(getattr(s, sb), kb)
        assert a <= b if op == "<=" else a >= b
    normalize_url(s.resolved_database_url)


@FUZZ
@given(st.one_of(one_key(), one_key(), many_keys()))
def test_any_document_gives_settings_or_a_config_error_naming_the_file(doc):
    try:
        s = settings_from_dict(doc, "f.toml")
    except ConfigError as exc:
        assert str(exc).startswith("f.toml: "), exc
        return
    assert_usable(s)


toml_lines = st.lists(
    st.one_of(
        st.sampled_from(["[health]", "[worker]", "[targets]", "[timeouts]", "[daemon]", "[http]", "[[x]]", "["]),
        st.builds(lambda k, v: f"{k} = {v}",
                  st.sampled_from(["interval", "max_age", "probe", "judge_url", "enabled", "sources", "rise", "jitter",
                                   "database_url", "listen", "x"]),
                  st.sampled_from(["inf", "-inf", "nan", "1e400", "0", "-1", "true", "1", '"http://["', "[]", '"a"',
                                   "0x10", "1_000", "3.5", "{}", '"\\u0000"', "'''x'''", "1979-05-27"])),
        st.text(alphabet=string.printable, max_size=30),
    ),
    max_size=8,
)


@FUZZ
@given(st.one_of(toml_lines.map("\n".join).map(str.encode), st.binary(max_size=60)))
def test_any_file_gives_settings_or_a_config_error(tmp_path_factory, content):
    path: Path = tmp_path_factory.getbasetemp() / "fuzz-config.toml"  # one file, rewritten per example
    path.write_bytes(content)
    try:
        s = load_settings(str(path), environ={})
    except ConfigError:
        return
    assert_usable(s)
