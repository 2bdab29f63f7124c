"""Bad input at the command line (issue 10's smaller defects), through the installed CLI:
a mistyped path is not a proxy, a bad port is said in our words, `import` warns about addresses
anti-captcha refuses, and a garbage file does not print a line per row."""

from __future__ import annotations

import sqlite3

import pytest

from cli import run_cli


@pytest.fixture
def workdir(tmp_path):
    assert run_cli("db", "upgrade", cwd=tmp_path).returncode == 0
    return tmp_path


def stored(workdir) -> list[str]:
    with sqlite3.connect(workdir / "state" / "proxycheck.db") as conn:
        return [key for (key,) in conn.execute("SELECT key FROM proxies")]


@pytest.mark.parametrize(
    ("arg", "said"),
    [
        ("nofile", "no such file nofile; to import a proxy URL write http://host:port"),
        ("adir", "adir is a directory"),
        ("missing.csv", "cannot read proxy file missing.csv"),
    ],
)
def test_import_of_a_mistyped_path_stores_nothing(workdir, arg, said):
    (workdir / "adir").mkdir()
    proc = run_cli("import", arg, cwd=workdir)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert stored(workdir) == []


def test_check_of_a_file_given_as_url(tmp_path):
    (tmp_path / "proxies.csv").write_text("url\n")
    proc = run_cli("check", "proxies.csv", cwd=tmp_path)
    assert proc.returncode == 2 and "give CSV files with --file proxies.csv" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://1.2.3.4:99999", "argument 'http://1.2.3.4:99999': port: is outside 1-65535"),
        # Without an '@', a "port" that is not digits may be a password (http://alice:S3cr3t).
        ("http://1.2.3.4:80a", "argument 'http://1.2.3.4:***': port: is not a number"),
    ],
)
def test_bad_port_in_our_words(workdir, url, said):
    for command in ("check", "import"):
        proc = run_cli(command, url, cwd=workdir)
        assert proc.returncode == 2, proc.stderr
        assert said in proc.stderr
        assert "Port out of range" not in proc.stderr and "cast to integer" not in proc.stderr


def test_import_warns_about_addresses(workdir):
    proc = run_cli("import", "http://proxy.example:3128", "http://10.1.2.3:3128", "http://127.0.0.1:3128",
                   "http://169.254.1.1:3128", "http://8.8.8.8:3128", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 4, proc.stderr
    for fragment in ("host name; anti-captcha wants an IP", "a private or reserved address", "loopback address", "link-local address"):
        assert any(fragment in w for w in warnings), (fragment, warnings)
    assert "imported: 5 added" in proc.stdout
    assert len(stored(workdir)) == 5


def test_garbage_file_prints_a_bounded_report(workdir):
    (workdir / "garbage.csv").write_bytes(b"url\n" + b"\x01garbage\xff\n" * 5000 + b"http://8.8.8.8:3128\n")
    proc = run_cli("import", "garbage.csv", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 21, proc.stderr
    assert lines[0] == "proxycheck: garbage.csv:2: address: contains the control character U+0001 at position 1"
    assert lines[-1] == "proxycheck: … and 4980 more bad rows in garbage.csv"
    assert "imported: 1 added, 0 updated, 0 unchanged; 5000 bad row(s) skipped" in proc.stdout
    strict = run_cli("import", "--strict", "garbage.csv", cwd=workdir)
    assert strict.returncode == 2 and "5000 bad row(s); nothing imported because of --strict" in strict.stderr


def test_import_warnings_are_capped(workdir):
    (workdir / "private.csv").write_text("url\n" + "".join(f"http://10.0.0.{n}:3128\n" for n in range(1, 26)))
    proc = run_cli("import", "private.csv", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 21 and lines[-1] == "proxycheck: … and 5 more address warnings", proc.stderr
