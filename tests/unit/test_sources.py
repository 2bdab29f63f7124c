"""CSV reading: good rows kept, bad rows named by file:line: field (pure)."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxycheck.errors import ProxycheckError
from proxycheck.sources import import_arguments, read_csv_file, read_csv_text

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
        "p.csv:3: type: is not a proxy type (known: http, https, socks4, socks4a, socks5, socks5h)",
        "p.csv:5: port: is not a number (ASCII digits, 1-65535)",
        "p.csv:7: address: is empty",
    ]


def test_url_column():
    loaded = read_csv_text("url,label\nsocks5://u:p@9.9.9.9:1080,main\n", "x.csv")
    assert loaded.errors == []
    assert loaded.proxies[0].label == "main" and loaded.proxies[0].password == "p"


@pytest.mark.parametrize(("text", "proxies", "errors"), [
    # URL lines under the installed header of columns: said so, with where URL lines go.
    ("type,address,port,login,password,tags,label\nhttp://1.2.3.4:8080\nsocks5://u:secret@1.2.3.5:1080\n", [], [
        "u.csv:2: row: is a proxy URL, but the header names columns (type,address,port,login,password,tags,label); "
        "URL lines go under a header `url`, or in a file with no header",
        "u.csv:3: row: is a proxy URL, but the header names columns (type,address,port,login,password,tags,label); "
        "URL lines go under a header `url`, or in a file with no header"]),
    # ... which take them: a `url` header, or none (the first row is a URL).
    ("url\nhttp://1.2.3.4:8080\n", ["http://1.2.3.4:8080"], []),
    ("# my proxies\nhttp://1.2.3.4:8080\nsocks5://u:secret@1.2.3.5:1080\nhttp://1.2.3.6:x\n",
     ["http://1.2.3.4:8080", "socks5://u:***@1.2.3.5:1080"], ["u.csv:4: port: is not a number (ASCII digits, 1-65535)"]),
])
def test_url_lines(text, proxies, errors):
    loaded = read_csv_text(text, "u.csv")
    assert [p.masked_url for p in loaded.proxies] == proxies
    assert [str(e) for e in loaded.errors] == errors
    assert all("secret" not in str(e) for e in loaded.errors)


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


GOOD = "http,1.2.3.4,3128,,,\n"


@pytest.mark.parametrize(
    ("row", "said"),
    [
        ("http,1.2.3.5,\u00b2,,,", "3: port: is not a number"),
        ("http,1.2.3.5,80,bob,pw\x00d,", "3: password: contains the control character U+0000 at position 3"),
        ("http,1.2.3.5,80,bob," + "p" * 200_000 + ",", "3: row: is 200021 characters long; the limit is 4096"),
        ("http," + "h" * 300 + ",80,,,", "3: address: is 300 characters long; a host name is at most 253"),
        ("http,1.2.3.5,80,,,\"a\x01b\"", "3: tags: contains the control character U+0001"),
        ("http,1.2.3.5,80,,,,,", "3: row: 8 fields but the header has 6"),
        ("http,1.2.3.5,80,,pw,", "3: login: a password was given without a login"),
        ("http,1.2.3.5,80,bob,\"pw", "3: row: is not valid CSV"),  # an unclosed quote: the password cut short
        ("http,1.2.3.5,80,bob,\"p\"w", "3: row: is not valid CSV"),
    ],
)
def test_one_bad_row_costs_one_row(row, said):
    loaded = read_csv_text("type,address,port,login,password,tags\n" + GOOD + row + "\n" + GOOD.replace("4", "6"), "b.csv")
    assert [p.host for p in loaded.proxies] == ["1.2.3.4", "1.2.3.6"]
    assert len(loaded.errors) == 1 and str(loaded.errors[0]).startswith(f"b.csv:{said}")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings_and_bom(newline):
    text = "\ufeff" + newline.join(["type,address,port", "http,1.2.3.4,80", "# note", "http,1.2.3.5,x", ""])
    loaded = read_csv_text(text, "n.csv")
    assert [p.host for p in loaded.proxies] == ["1.2.3.4"]
    assert [str(e).split(": ")[0] for e in loaded.errors] == ["n.csv:4"]


def test_bytes_that_are_not_utf8_cost_their_row(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"\xef\xbb\xbftype,address,port,login,password\nhttp,1.2.3.4,80,b\xf6b,pw\nhttp,1.2.3.5,80,,\n")
    loaded = read_csv_file(path)
    assert [p.host for p in loaded.proxies] == ["1.2.3.5"]
    assert [str(e) for e in loaded.errors] == [f"{path}:2: login: is not UTF-8 text (byte 0xf6 at position 2)"]


def test_utf16_file_is_named(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("type,address,port\nhttp,1.2.3.4,80\n".encode("utf-16"))
    with pytest.raises(ProxycheckError, match="UTF-16 text; save it as UTF-8"):
        read_csv_file(path)


def test_binary_garbage_is_one_clear_error(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ProxycheckError, match=r"garbage.csv:1: a column name in the header contains the control character U\+0000") as info:
        read_csv_file(path)
    assert len(str(info.value)) < 300


def test_garbage_rows_are_counted_not_all_shown():
    loaded = read_csv_text("url\n" + "garbage\x01\n" * 500, "g.csv")
    loaded.extend(read_csv_text("url\nnot-a-url:x\n", "h.csv"))
    lines = loaded.error_lines(note=" (skipped)")
    assert len(loaded.errors) == 501 and len(lines) == 22
    assert lines[0] == "g.csv:2: address: contains the control character U+0001 at position 8 (skipped)"
    assert lines[20] == "h.csv:2: port: is not a number (ASCII digits, 1-65535) (skipped)"
    assert lines[21] == "… and 480 more bad rows in g.csv (skipped)"


def test_repeated_column_is_fatal():
    with pytest.raises(ProxycheckError, match="x.csv:1: column 'url' appears twice"):
        read_csv_text("url,url\n", "x.csv")


@pytest.mark.parametrize(
    ("args", "urls", "files"),
    [
        (["proxies.csv"], [], ["proxies.csv"]),  # exists
        (["missing.csv"], [], ["missing.csv"]),  # read_csv_file says it cannot read it
        (["list.txt"], [], ["list.txt"]),  # exists, any name
        (["1.2.3.4:3128", "u:p@h", "socks5://h:1"], ["1.2.3.4:3128", "u:p@h", "socks5://h:1"], []),
    ],
)
def test_import_arguments(tmp_path, monkeypatch, args, urls, files):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proxies.csv").write_text("url\n")
    (tmp_path / "list.txt").write_text("url\n")
    assert import_arguments(args) == (urls, files)


@pytest.mark.parametrize(
    ("arg", "said"),
    [("nofile", "no such file nofile; to import a proxy URL write http://host:port"), ("adir", "adir is a directory")],
)
def test_import_argument_that_is_neither(tmp_path, monkeypatch, arg, said):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    with pytest.raises(ProxycheckError, match=said):
        import_arguments([arg])
