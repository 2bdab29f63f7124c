"""The documentation holds together, and the project carries its own sources.

Rules:
1. Every relative link in the README, docs/*.md and bench/README.md names a file of this
   repository, and every `#anchor` names a heading of its target (GitHub's slugs).
2. No file of the repository refers to a file outside it: not `../shared` (the research notes
   the project was started from), and no `*.md` that is not in the repository (a name counts
   as ours when it ends one of our paths: `grafana.md`, `docs/grafana.md`, `../bench/README.md`).
   What the code relies on is in docs/, with public sources. This file, which must spell such
   names to test the check, is the one file not scanned.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")
SKIPPED_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                "build", "dist", "state"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".sh", ".service", ".sysusers", ".cfg", ".ini", ".txt", ".json", ".yml",
                 ".yaml", ".html", ".mako", ".csv", ""}
OUTSIDE = "../" + "shared"  # spelled in two parts so this file does not name it
MD_NAME = re.compile(r"(?<![\w./-])((?:\.\./|[\w-]+/)*[\w-]+\.md)\b")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def broken_links(page: Path, text: str | None = None) -> list[str]:
    """The relative links of ``page`` (its text, or ``text`` as if it were) that lead nowhere."""
    bad = []
    for target in LINK.findall(page.read_text() if text is None else text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or ROOT not in file.parents:
            bad.append(f"{page.relative_to(ROOT)}: ({target}): no such file in the repository")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            bad.append(f"{page.relative_to(ROOT)}: ({target}): {file.name} has no heading #{anchor}")
    return bad


@functools.cache
def repository_files() -> tuple[Path, ...]:
    """The repository's text files (skipping .git, virtualenvs, caches and build output)."""
    files = []
    for top, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        files += [Path(top) / n for n in sorted(names) if Path(n).suffix in TEXT_SUFFIXES]
    return tuple(files)


def outside_references(path: Path, text: str) -> list[str]:
    """What ``text`` (the file ``path``) names outside the repository."""
    found = [f"{path.relative_to(ROOT)}:{n}: {OUTSIDE}" for n, line in enumerate(text.splitlines(), 1)
             if OUTSIDE in line]
    ours = {"/" + str(f.relative_to(ROOT)) for f in repository_files() if f.suffix == ".md"}
    for n, line in enumerate(text.splitlines(), 1):
        for name in MD_NAME.findall(line):
            if not any(f.endswith("/" + re.sub(r"^(\.\./)+", "", posixpath.normpath(name))) for f in ours):
                found.append(f"{path.relative_to(ROOT)}:{n}: {name} is not in the repository")
    return found


def test_the_slugs_are_githubs():
    assert slug("The judge: `proxycheck judge`") == "the-judge-proxycheck-judge"
    assert slug("Output: `status --json`") == "output-status---json"
    assert slug("Where the presets come from") == "where-the-presets-come-from"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(page):
    assert not broken_links(page), "\n".join(broken_links(page))


def test_a_broken_link_is_found():
    text = "[ok](#the-codes-anti-captchas-proxy-errors-and-what-other-services-send) [gone](#nowhere)\n" \
           "[file](no-such.md) [up](../README.md#where-to-read-more) [web](https://anti-captcha.com/apidoc/errors)\n"
    assert broken_links(ROOT / "docs" / "codes.md", text) == [
        "docs/codes.md: (#nowhere): codes.md has no heading #nowhere",
        "docs/codes.md: (no-such.md): no such file in the repository",
    ]


def test_no_file_refers_outside_the_repository():
    found = [ref for path in repository_files() if path != Path(__file__).resolve()
             for ref in outside_references(path, path.read_text(errors="replace"))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("text", "found"), [
    (f"Where the presets come from: {OUTSIDE}/research/captcha_services.md §4.", 2),
    ("with that provider's ban answer (captcha_services.md §4):", 1),
    ("the docs (docs/ban-presets.md) and bench/README.md", 0),
    ('install -D -m 0644 "$here/../README.md" /usr/share/doc/proxycheck/README.md', 0),
])
def test_the_check_finds_what_it_must(text, found):
    assert len(outside_references(ROOT / "proxycheck" / "bans.py", text)) == found
