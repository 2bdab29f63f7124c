"""Every command explains itself: ``--help`` with a runnable example, and ``--version``."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from proxycheck import __version__
from proxycheck.cli import cli


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(cmd, click.Group):
            found += commands(cmd, path)
    return found


@pytest.mark.parametrize("path", commands(cli), ids=" ".join)
def test_help_has_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert f"proxycheck {path[0]}" in result.output.split("Options:")[0], f"no example in `proxycheck {' '.join(path)} --help`"


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
