"""The built wheel carries the Alembic tree: `proxycheck db upgrade` works from a plain install.

The distribution is ours (proxycheck-fleet: "proxycheck" on PyPI is someone else's) with SPDX
license metadata, and `python -m build` (sdist, then the wheel from it) warns of nothing deprecated.

The wheel is built from this checkout and unpacked into a fresh directory that is put first on
sys.path (a wheel install is exactly that: its files in a site directory); the dependencies come
from the test environment. The test proves the code that ran came from the wheel.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """``python -m build`` of this checkout: the output directory and everything it printed."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    (whl,) = built[0].glob("proxycheck_fleet-*.whl")
    return whl


def test_build_warns_of_nothing_deprecated(built):
    out, printed = built
    assert "deprecat" not in printed.lower(), printed
    assert "would be ignored" not in printed.lower(), printed  # a data directory left out of `packages`
    assert sorted(p.name for p in out.iterdir()) == ["proxycheck_fleet-0.1.0-py3-none-any.whl", "proxycheck_fleet-0.1.0.tar.gz"]


def test_wheel_metadata_names_our_distribution(wheel):
    whl = zipfile.ZipFile(wheel)
    (meta,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
    headers = email.parser.Parser().parsestr(whl.read(meta).decode(), headersonly=True)
    assert headers["Name"] == "proxycheck-fleet"
    assert headers["License-Expression"] == "MIT"
    assert headers.get_all("License-File") == ["LICENSE"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in whl.namelist())
    entry_points = whl.read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert "proxycheck = proxycheck.cli:main" in entry_points  # the command keeps its name


def test_wheel_contains_the_migrations(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "proxycheck/migrations/env.py" in names
    assert "proxycheck/migrations/script.py.mako" in names
    assert any(n.startswith("proxycheck/migrations/versions/0001_") for n in names)
    assert not any(n.startswith(("migrations/", "tests/")) for n in names)


def test_db_upgrade_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYCHECK_")}
    env["PYTHONPATH"] = str(site)
    db = tmp_path / "state" / "proxycheck.db"
    code = (
        "import sys, proxycheck; assert proxycheck.__file__.startswith(sys.argv[1]), proxycheck.__file__;"
        "from proxycheck.cli import main; sys.argv = ['proxycheck'] + sys.argv[2:]; main()"
    )
    run = lambda *args: subprocess.run([sys.executable, "-c", code, str(site), *args], capture_output=True, text=True,
                                       env={**env, "PROXYCHECK_DATABASE_URL": f"sqlite:///{db}"}, cwd=tmp_path, timeout=120)
    up = run("db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert "migrated empty -> " in up.stdout
    current = run("db", "current")
    assert current.returncode == 0 and "(latest: " in current.stdout, current.stdout + current.stderr


def test_wheel_contains_the_status_page(wheel):
    """The page works offline: templates, the vendored uPlot and its licence ship in the wheel."""
    names = set(zipfile.ZipFile(wheel).namelist())
    page = "proxycheck/http_api/page/"
    for name in ("templates/base.html", "templates/fleet.html", "templates/table.html", "templates/proxy.html",
                 "templates/login.html", "static/uPlot.iife.min.js", "static/uPlot.min.css", "static/uPlot.LICENSE",
                 "static/charts.js", "static/page.css"):
        assert page + name in names, name
    assert "MIT" in zipfile.ZipFile(wheel).read(page + "static/uPlot.LICENSE").decode()


def test_the_readme_travels_with_the_pages_it_links(built, wheel):
    """The wheel's description is the README; the sdist carries docs/, which the README links to."""
    whl = zipfile.ZipFile(wheel)
    (meta,) = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
    message = email.parser.Parser().parsestr(whl.read(meta).decode())
    assert message["Description-Content-Type"] == "text/markdown"
    assert message.get_payload().strip() == (ROOT / "README.md").read_text().strip()
    (sdist,) = built[0].glob("proxycheck_fleet-*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", (ROOT / "README.md").read_text()))
    assert linked and linked <= names, sorted(linked - names)
    assert {f"docs/{p.name}" for p in (ROOT / "docs").iterdir()} <= names
