"""No instruction installs proxycheck from a package index.

"proxycheck" on PyPI is an unrelated project, and we publish nothing there (our distribution is
proxycheck-fleet, installed from a checkout or a wheel built from it). Every `pip install` in the
README, in docs/, in deploy/, in every command's --help and in any message the package prints must name a
local path (`.`, `'.[postgresql]'`, `dist/proxycheck_fleet-*.whl`) or a third-party package, never
`proxycheck`, `proxycheck[...]` or `proxycheck-fleet` by name.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from proxycheck.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PIP_INSTALL = re.compile(r"\bpip3?\s+install\s+([^\n`]*)")
LOCAL = re.compile(r"^(\.|/|~|\w+/)|\.(whl|tar\.gz|zip)(\[|$)")


def from_an_index(line: str) -> list[str]:
    """The requirements on a `pip install` line that name one of ours and are not local paths."""
    bad = []
    for match in PIP_INSTALL.finditer(line):
        rest = re.split(r"&&|;|\||#", match.group(1))[0]
        try:
            words = shlex.split(rest)
        except ValueError:
            words = rest.split()
        for word in words:
            word = word.strip("'\"")
            if word.startswith("-") or LOCAL.search(word):
                continue
            name = re.match(r"[A-Za-z0-9._-]*", word).group(0)
            if re.sub(r"[-_.]+", "-", name).lower().startswith("proxycheck"):
                bad.append(word)
    return bad


@pytest.mark.parametrize(("line", "bad"), [
    ("sudo /opt/proxycheck/bin/pip install 'proxycheck[postgresql]'", ["proxycheck[postgresql]"]),
    ("pip install proxycheck", ["proxycheck"]),
    ("pip install -U Proxycheck_Fleet==0.1.0", ["Proxycheck_Fleet==0.1.0"]),
    ("python3 -m venv .venv && .venv/bin/pip install -e . && proxycheck run", []),
    ("pip install dist/proxycheck_fleet-0.1.0-py3-none-any.whl", []),
    ("pip install 'proxycheck_fleet-0.1.0-py3-none-any.whl[postgresql]'", []),
    ("deploy/install.sh '.[postgresql]'; pip install 'psycopg[binary]>=3.1'", []),
])
def test_the_grep_tells_local_from_index(line, bad):
    assert from_an_index(line) == bad


def help_texts(group: click.Group = cli, path: tuple[str, ...] = ()) -> dict[str, str]:
    """`proxycheck [SUB...] --help` for every command and group."""
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    texts = {" ".join(("proxycheck", *path, "--help")): result.output}
    for name, command in getattr(group, "commands", {}).items():
        texts.update(help_texts(command, (*path, name)))
    return texts


def documents() -> dict[str, str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "deploy").rglob("*")), *sorted((ROOT / "proxycheck").rglob("*.py"))]
    texts = {str(f.relative_to(ROOT)): f.read_text() for f in files if f.is_file()}
    return {**texts, **help_texts()}


def test_every_command_has_help():
    assert {"proxycheck run --help", "proxycheck db upgrade --help", "proxycheck config check --help"} <= set(help_texts())


def test_no_instruction_installs_ours_from_an_index():
    found = [f"{where}: {line.strip()}" for where, text in documents().items()
             for line in text.splitlines() if from_an_index(line)]
    assert not found, "\n".join(found)
