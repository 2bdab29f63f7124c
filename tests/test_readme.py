"""The README opens with two commands that work on a fresh machine; this keeps the first one true.

The README stays short (at most 250 lines: what it is, the two commands, the three ways to use it,
where to read more); the reference lives in docs/, and the README lists every page of it.

The first code block is run verbatim (bash) in a fresh clone with a fresh virtualenv: it must
install, migrate and start the daemon on its embedded default (SQLite in ./state). The test waits
for the daemon to say it is ready, sends SIGTERM and expects a clean exit. The second command is
`bash .ci/run` — what CI itself runs, so CI proves it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_readme_says_what_it_is_before_any_command():
    title, opening, _ = (ROOT / "README.md").read_text().split("\n\n", 2)
    assert title == "# proxycheck"
    assert "```" not in opening and "`proxycheck run`" not in opening, opening
    assert "captcha" in opening and " for people who " in opening, opening  # what it is, who it is for


def test_readme_reads_in_five_minutes_and_points_at_every_page():
    """What it is, the two commands, three ways to use it; the reference is in docs/, all linked."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, f"README.md is {len(text.splitlines())} lines; move reference into docs/"
    more = text.split("\n## Where to read more\n", 1)[1]
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages and pages <= set(re.findall(r"\]\((docs/[\w-]+\.md)\)", more)), "a page of docs/ the README does not list"


def test_readme_opens_with_setup_then_tests():
    first, second = readme_commands()[:2]
    assert "proxycheck run" in first and "pip install" in first
    assert second.strip() == "bash .ci/run"
    assert "pytest" in (ROOT / ".ci/run").read_text()


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout to clone")
def test_first_command_sets_up_and_runs_the_daemon(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    command = readme_commands()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXYCHECK_", "VIRTUAL_ENV", "NOTIFY_SOCKET"))}
    proc = subprocess.Popen(["bash", "-c", command], cwd=clone, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    try:
        deadline = time.monotonic() + 600
        for line in proc.stdout:
            output.append(line)
            if "ready:" in line:
                break
            assert time.monotonic() < deadline, "".join(output[-30:])
        else:
            raise AssertionError("the command ended before the daemon was ready:\n" + "".join(output[-40:]))
        assert (clone / "state" / "proxycheck.db").exists()
        os.killpg(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, "".join(output[-20:]) + rest
    assert "Traceback" not in "".join(output) + rest
