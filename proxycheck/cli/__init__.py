"""The command line. Thin: parse, load settings, call the module that does the work, print.

Exit codes (scripts rely on them): 0 all fine; 1 some proxy unhealthy (or, for ``status``, no
healthy proxy); 2 usage, config or input error; 3 the checker itself could not judge
(``checker_unavailable``). Errors are one sentence and the next step; tracebacks only with -v.

One module per family of commands, each a list of click commands added to the group here:
``checking.py`` (check, judge, explain, demo, doctor: work without a database), ``fleet.py``
(run, import, status, history, token: the daemon and its database), ``admin.py`` (config
check, db upgrade, db current); ``common.py`` holds what they share (``CliError``, settings,
the database's door for reads).
"""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from ..errors import ProxycheckError
from . import admin, checking, fleet
from .common import EXIT_USAGE


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="proxycheck")
@click.option("-v", "--verbose", count=True, help="More logging; tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Keep proxies pre-flight-checked for captcha-solving services.

    \b
    proxycheck check http://user:pass@203.0.113.7:3128     one-shot check
    proxycheck judge --listen 0.0.0.0:8080                  run your own judge
    """
    from ..logs import setup_logging

    setup_logging(verbose)
    ctx.obj = {"verbose": verbose}


for _command in (*checking.COMMANDS, *fleet.COMMANDS, *admin.COMMANDS):
    cli.add_command(_command)


def main() -> None:
    from ..masking import redact

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ProxycheckError as exc:
        click.echo(f"proxycheck: {redact(str(exc))}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one sentence, not a traceback
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        click.echo(f"proxycheck: unexpected error: {type(exc).__name__}: {redact(str(exc))} (run with -v for the traceback)", err=True)
        sys.exit(EXIT_USAGE)


__all__ = ["cli", "main"]
