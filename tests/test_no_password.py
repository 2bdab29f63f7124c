"""No password in any error: nasty proxy URLs through every error path of the installed CLI
(``check URL``, ``check --file``, ``import URL``, ``import FILE``) and through the daemon's CSV
warnings (``run --once``), as subprocesses, in batches.

A password must not appear in any form: as typed, percent-encoded, percent-decoded, or inside
the Base64 of a ``Basic`` header. Every password carries a unique marker so a hit is a leak, not
a coincidence. The targets are closed loopback ports, so accepted proxies are never judged.
"""

from __future__ import annotations

import base64
import csv
import random
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from cli import run_cli

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


@dataclass(frozen=True)
class Case:
    text: str  # as the user typed it
    login: str
    password: str  # what they meant (decoded)
    typed: str  # the password as it appears in ``text``


def passwords() -> list[str]:
    """The issue's examples, then passwords built from every delimiter, unicode and spaces."""
    fixed = ["S3cr3t-PW", "S3c/r3t-PW", "S3c#r3t-PW", "S3c?r3t-PW", "S3cr3t"]
    rng = random.Random(2026)
    alphabet = "/#?@:%[] \\'\"é€😀ü\t" + "abcXYZ019"
    generated = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) + f"Zq{i}Xw"
                 + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for i in range(8)]
    return fixed + generated


def cases() -> tuple[list[Case], list[Case]]:
    """(rejected, accepted) URL cases, each password typed raw and percent-encoded, sorted by
    what the parser says (a raw '@' in a password with the host forgotten is a valid URL)."""
    from proxycheck.errors import ProxyParseError
    from proxycheck.proxy import parse_proxy_url

    rejected, accepted = [], []
    for i, pw in enumerate(passwords()):
        login = f"alice{i}"
        for typed in dict.fromkeys([pw, quote(pw, safe="")]):
            for text in [
                f"http://{login}:{typed}@127.0.0.{i + 2}:{9000 + i}",
                f"http://{login}:{typed}@[::1",  # the issue's example: urlsplit raises
                f"http://{login}:{typed}@127.0.0.1:99999",
                f"http://{login}:{typed}@127.0.0.1:\u00b2",
                f"socks5://{login}:{typed}@127.0.0.1",
                f"http://{login}:{typed}@127.0.0.1:8080/path",
                f"http://{login}:{typed}@pr\x01xy:8080",  # (argv cannot carry NUL; the CSV tests have it)
                f"http://{login}:{typed}@{'h' * 300}:8080",
                f"127.0.0.1:8080:{login}:{typed}",  # a proxy list's host:port:login:password
                f"http://{login}:{typed}",  # the host forgotten: the password is the "port"
            ]:
                try:
                    parse_proxy_url(text)
                except ProxyParseError:
                    rejected.append(Case(text, login, pw, typed))
                else:
                    accepted.append(Case(text, login, pw, typed))
    return rejected, accepted


REJECTED, ACCEPTED = cases()


def forms(case: Case) -> set[str]:
    """The password in every form, and its marker alone: a leaked part of it counts too."""
    markers = set(re.findall(r"Zq\d+Xw", case.password)) or {p for p in re.split(r"[-/#?]", case.password) if len(p) >= 3}
    plain = {case.password, case.typed, unquote(case.typed)} | markers
    encoded = {quote(p, safe=s) for p in plain for s in ("", "/", "/:@")}
    basic = {base64.b64encode(f"{case.login}:{p}".encode()).decode() for p in plain | encoded}
    return {f for f in plain | encoded | basic if len(f) >= 4}


def assert_no_password(output: str, cases: list[Case]) -> None:
    for case in cases:
        for form in forms(case):
            assert form not in output, f"password of {case.login} shown as {form!r}:\n{output}"


def chunks(items: list, size: int = 20) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A config with closed targets and a migrated SQLite database; CSV files of the cases,
    at most 20 rows each (the CLI shows 20 bad rows per file)."""
    tmp = tmp_path_factory.mktemp("nopw")
    files = []
    for n, batch in enumerate(chunks(REJECTED + ACCEPTED)):
        path = tmp / f"urls{n}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["url", "label"])
            writer.writerows([c.text, f"row-{c.login}"] for c in batch)
        files.append(path)
    for n, batch in enumerate(chunks(passwords(), 10)):  # raw credentials in their own columns
        path = tmp / f"fields{n}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["type", "address", "port", "login", "password"])
            for i, pw in enumerate(batch):
                writer.writerow(["http", "127.0.0.1", "99999", f"bob{i}", pw])
                writer.writerow(["http", "127.0.0.1", "\u00b2", f"bob{i}", pw])
        files.append(path)
    garbage = tmp / "garbage.csv"  # 500 bad rows: the daemon's log shows 20 and a count
    garbage.write_bytes(b"url\n" + b"\x01garbage\xff\n" * 500)
    targets = "\n".join(f'{k} = "{CLOSED}/{k}"' for k in ("judge_url", "ip_url", "long_get_url", "ban_url"))
    targets += '\nssl_url = "https://127.0.0.1:9/"'
    sources = ", ".join(f'"{f}"' for f in [*files, garbage])
    config = tmp / "proxycheck.toml"
    config.write_text(f'state_dir = "{tmp / "state"}"\n[targets]\n{targets}\nimage_urls = ["{CLOSED}/i.png"]\n'
                      f"[timeouts]\nconnect = 1.0\nread = 1.0\nprobe = 2.0\n[daemon]\nsources = [{sources}]\n")
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    return {"config": str(config), "files": [str(f) for f in files], "garbage": str(garbage)}


def field_rows() -> list[Case]:
    return [Case("", f"bob{i}", pw, pw) for batch in chunks(passwords(), 10) for i, pw in enumerate(batch)]


def test_the_cases_cover_the_issue():
    assert len(REJECTED) > 200 and len(ACCEPTED) > 10
    assert any(c.text == "http://alice0:S3cr3t-PW@[::1" for c in REJECTED)


@pytest.mark.parametrize("command", ["check", "import"])
def test_rejected_url_arguments(setup, command):
    for batch in chunks(REJECTED):
        proc = run_cli(command, "--config", setup["config"], *(c.text for c in batch))
        assert proc.returncode == 2, proc.stderr
        named = [line for line in proc.stderr.splitlines() if line.removeprefix("Error: ").startswith("argument ")]
        assert len(named) == len(batch), proc.stderr  # every bad argument named
        assert_no_password(proc.stdout + proc.stderr, batch)


def test_check_accepted_urls(setup):
    for args in ([], ["--json"]):
        proc = run_cli("check", "--config", setup["config"], *args, *(c.text for c in ACCEPTED))
        assert proc.returncode == 3, proc.stderr  # the closed judge: checker unavailable
        assert "alice" in proc.stdout
        assert_no_password(proc.stdout + proc.stderr, ACCEPTED)


def test_import_accepted_urls(setup):
    proc = run_cli("import", "--config", setup["config"], *(c.text for c in ACCEPTED))
    assert proc.returncode == 0, proc.stderr
    assert "loopback address" in proc.stderr
    assert_no_password(proc.stdout + proc.stderr, ACCEPTED)


@pytest.mark.parametrize("command", ["check", "import"])
def test_csv_files(setup, command):
    args = [a for f in setup["files"] for a in ("--file", f)] if command == "check" else setup["files"]
    proc = run_cli(command, "--config", setup["config"], *args)
    assert proc.returncode in (0, 3), proc.stderr
    rows_reported = sum(1 for line in proc.stderr.splitlines() if ".csv:" in line)
    assert rows_reported == len(REJECTED) + 2 * len(passwords()), proc.stderr
    assert_no_password(proc.stdout + proc.stderr, REJECTED + ACCEPTED + field_rows())


def test_daemon_csv_warnings(setup):
    proc = run_cli("run", "--once", "--config", setup["config"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if "(skipped)" in line]
    garbage = [line for line in skipped if setup["garbage"] in line]
    assert len(garbage) == 21 and garbage[-1].endswith(f"… and 480 more bad rows in {setup['garbage']} (skipped)")
    assert len(skipped) - len(garbage) == len(REJECTED) + 2 * len(passwords())
    assert_no_password(proc.stdout + proc.stderr, REJECTED + ACCEPTED + field_rows())
    status = run_cli("status", "--config", setup["config"], "--json")
    assert "alice" in status.stdout
    assert_no_password(status.stdout + status.stderr, ACCEPTED)
