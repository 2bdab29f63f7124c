"""CSV reading: good rows kept, bad rows named by file:line: field (pure)."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxycheck.errors import ProxycheckError
from proxycheck.sources import read_csv_file, read_csv_text

ROOT = Path(__file__).resolve().parents[2]


def test_example_file_is_valid():
    loaded = read_csv_file(ROOT / "proxies.example.csv")
    assert loaded.errors == []
    assert len(loaded.proxies) >= 3
    assert {p.scheme for p in loaded.proxies} >= {"http", "socks5"}


def test_bad_rows_are_reported_and_others_kept():
    text = (
        "type,address,port,login,password,tags\n"
        "http,1.2.3.4,3128,,,us\n"
        "socks9,1.2.3.5,1080,,,\n"
        "# a comment\n"
        "http,1.2.3.6,notaport,,,\n"
        "socks5,1.2.3.7,1080,bob,pw,\"de,eu\"\n"
        "http,,8080,,,\n"
    )
    loaded = read_csv_text(text, "p.csv")
    assert [p.host for p in loaded.proxies] == ["1.2.3.4", "1.2.3.7"]
    assert loaded.proxies[1].tags == frozenset({"de", "eu"})
    assert [str(e) for e in loaded.errors] == [
        "p.csv:3: type: 'socks9' is not a proxy type (known: http, https, socks4, socks4a, socks5, socks5h)",
        "p.csv:5: port: 'notaport' is not a number",
        "p.csv:7: address: is empty",
    ]


def test_url_column():
    loaded = read_csv_text("url,label\nsocks5://u:p@9.9.9.9:1080,main\n", "x.csv")
    assert loaded.errors == []
    assert loaded.proxies[0].label == "main" and loaded.proxies[0].password == "p"


def test_unknown_column_is_fatal_and_named():
    with pytest.raises(ProxycheckError, match=r"x.csv:1: unknown column 'prot'"):
        read_csv_text("prot,address,port\n", "x.csv")


def test_password_not_in_row_error():
    loaded = read_csv_text("type,address,port,login,password\nhttp,1.2.3.4,0,bob,hunter2\n", "x.csv")
    assert len(loaded.errors) == 1 and "hunter2" not in str(loaded.errors[0])


def test_unreadable_file(tmp_path):
    with pytest.raises(ProxycheckError, match="cannot read proxy file"):
        read_csv_file(tmp_path / "missing.csv")


@given(st.lists(st.text(max_size=30), max_size=6))
def test_garbage_rows_never_crash(cells):
    text = "type,address,port,login,password\n" + ",".join(c.replace("\n", " ").replace("\r", " ") for c in cells) + "\n"
    loaded = read_csv_text(text, "g.csv")
    assert len(loaded.proxies) + len(loaded.errors) <= 1
    for e in loaded.errors:
        assert str(e).startswith("g.csv:2: ")
