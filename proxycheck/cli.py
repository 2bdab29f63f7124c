"""The command line. Thin: parse, load settings, call the module that does the work, print.

Exit codes (scripts rely on them): 0 all fine; 1 some proxy unhealthy (or, for ``status``, no
healthy proxy); 2 usage, config or input error; 3 the checker itself could not judge
(``checker_unavailable``). Errors are one sentence and the next step; tracebacks only with -v.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from . import __version__
from .config import Settings, load_settings
from .errors import ProxycheckError

if TYPE_CHECKING:
    from .sources import LoadedProxies

T = TypeVar("T")

EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

log = logging.getLogger("proxycheck")


class CliError(click.ClickException):
    exit_code = EXIT_USAGE

    def format_message(self) -> str:
        from .masking import redact

        return redact(self.message)  # our messages never quote a password; this is the second line


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None


config_option = click.option(
    "--config", "-c", "config", metavar="FILE", envvar=None,
    help="TOML config file (default: $PROXYCHECK_CONFIG, then ./proxycheck.toml).",
)


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
    from .logs import setup_logging

    setup_logging(verbose)
    ctx.obj = {"verbose": verbose}


@cli.command()
@config_option
@click.option("--file", "-f", "files", multiple=True, type=click.Path(), metavar="CSV", help="CSV file of proxies (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per proxy.")
@click.option("--concurrency", "-n", type=click.IntRange(1, 10000), help="Proxies checked at once (default: [check].concurrency).")
@click.option("--strict", is_flag=True, help="Any bad CSV row is fatal (default: report it and go on).")
@click.argument("urls", nargs=-1, metavar="[URL]...")
def check(config: str | None, files: tuple[str, ...], as_json: bool, concurrency: int | None, strict: bool, urls: tuple[str, ...]) -> None:
    """Check proxies once and print each verdict.

    \b
    URL forms: http://[user:pass@]host:port, https://, socks4://, socks5://, socks5h://
    (IPv6 in brackets; credentials percent-encoded).
    Example:
      proxycheck check --config proxycheck.toml socks5://198.51.100.2:1080
      proxycheck check --file proxies.csv --json > report.json
    Exit: 0 all healthy, 1 some unhealthy, 2 bad input, 3 checker unavailable.
    """
    settings = _settings(config)
    if not urls and not files:
        raise CliError("nothing to check: give proxy URLs or --file CSV (see `proxycheck check --help`)")
    for text in urls:
        if "://" not in text and Path(text).exists():
            kind = "a directory" if Path(text).is_dir() else "a file"
            raise CliError(f"{text} is {kind}, not a proxy URL: give CSV files with --file {text}")
    loaded = _load(list(urls), list(files))
    if loaded.errors and strict:
        raise CliError(f"{len(loaded.errors)} bad row(s); not checking anything because of --strict")
    proxies = loaded.deduplicated(by_identity=False)
    if not proxies:
        raise CliError("no usable proxies in the input")

    from .checker import Checker  # after the input is known good: a bad one fails fast
    from .output import render_check_table

    stderr = Console(stderr=True)
    progress_wanted = not as_json and stderr.is_terminal and len(proxies) > 1
    checker = Checker(settings)
    rnd = asyncio.run(_run_check(checker, proxies, concurrency, stderr if progress_wanted else None))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rnd.results], indent=2))
    else:
        if rnd.checker_unavailable:
            click.echo(f"proxycheck: checker unavailable, no proxy was judged: {rnd.status.reason}", err=True)
        render_check_table(rnd.results, Console(highlight=False))
    if rnd.checker_unavailable:
        sys.exit(EXIT_UNAVAILABLE)
    sys.exit(0 if all(r.healthy for r in rnd.results) else EXIT_UNHEALTHY)


async def _run_check(checker, proxies, concurrency, console: Console | None):
    if console is None:
        return await checker.check_many(proxies, concurrency=concurrency)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("check", total=len(proxies))
        return await checker.check_many(proxies, concurrency=concurrency, on_result=lambda _r: bar.advance(task))


@cli.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT", help="Plain-HTTP address.")
@click.option("--tls-listen", metavar="HOST:PORT", help="Also serve HTTPS here (needs --cert and --key).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate chain for HTTPS.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="PEM private key for HTTPS.")
@click.option("--ban-ip", multiple=True, metavar="IP", help="Treat this caller as banned on the ban endpoint (for tests and demos).")
@click.option("--ban-mode", type=click.Choice(["sorry", "429", "unusual", "cloudflare"]), default="sorry", show_default=True)
@click.option("--ban-on", multiple=True, metavar="PRESET=IP",
              help="Ban this caller on one preset's stand-in only (recaptcha, google_search, hcaptcha, turnstile, funcaptcha).")
@click.option("--verbose-requests", is_flag=True, help="Log every request.")
def judge(listen: str, tls_listen: str | None, cert: str | None, key: str | None, ban_ip: tuple[str, ...], ban_mode: str,
          ban_on: tuple[str, ...], verbose_requests: bool) -> None:
    """Run the judge: header echo, IP echo, test image, long-GET and ban endpoints.

    \b
    Run it on a public host of yours and point [targets] at it:
      proxycheck judge --listen 0.0.0.0:8080
      judge_url = "http://YOUR-HOST:8080/get"     ip_url = "http://YOUR-HOST:8080/ip"
    It binds 127.0.0.1 unless told otherwise and never forwards requests (not an open proxy).
    """
    from .judge import JudgeOptions, parse_listen, serve_forever

    target_bans: dict[str, set[str]] = {}
    for item in ban_on:
        preset, sep, ip = item.partition("=")
        if not sep:
            raise CliError(f"--ban-on {item!r}: expected PRESET=IP, e.g. turnstile=203.0.113.7")
        target_bans.setdefault(preset.strip(), set()).add(ip.strip())
    try:
        options = JudgeOptions(
            listen=parse_listen(listen),
            tls_listen=parse_listen(tls_listen) if tls_listen else None,
            cert_file=cert, key_file=key, ban_ips=frozenset(ban_ip), ban_mode=ban_mode,
            target_bans=tuple((p, frozenset(ips)) for p, ips in target_bans.items()), verbose=verbose_requests,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if tls_listen and not (cert and key):
        raise CliError("--tls-listen needs --cert and --key")
    serve_forever(options)


@cli.group("config")
def config_group() -> None:
    """Validate the configuration.

    \b
    Example:
      proxycheck config check /etc/proxycheck/proxycheck.toml
    """


@config_group.command("check")
@click.argument("file", type=click.Path())
def config_check(file: str) -> None:
    """Validate FILE and name any bad key.

    \b
    Example:
      proxycheck config check proxycheck.toml
    """
    if not Path(file).exists():
        raise CliError(f"config file {file} does not exist")
    settings = _settings(file)
    click.echo(f"{file}: OK (database: {_mask_url(settings.resolved_database_url)})")


@cli.command()
@config_option
@click.option("--once", is_flag=True, help="Check every due proxy once, store the results and exit (cron, tests).")
def run(config: str | None, once: bool) -> None:
    """Run the daemon in the foreground (what systemd runs).

    \b
    Example:
      proxycheck db upgrade && proxycheck run --config proxycheck.toml
    SIGTERM finishes in-flight checks and exits 0; SIGHUP reloads the config (the log names
    keys that need a restart) and re-syncs its CSV sources.
    """
    from .daemon import run_daemon

    settings = _settings(config)
    try:
        code = run_daemon(settings, config_path=config, once=once)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    sys.exit(code)


@cli.command()
@config_option
@click.option("--unhealthy", is_flag=True, help="Only unhealthy proxies.")
@click.option("--tag", help="Only proxies with this tag.")
@click.option("--code", "code_text", metavar="CODE", help="Only proxies failing with this code (29 or ERROR_PROXY_TRANSPARENT).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: summary and proxies (see README).")
def status(config: str | None, unhealthy: bool, tag: str | None, code_text: str | None, as_json: bool) -> None:
    """Show the fleet from the database (works whether or not the daemon runs).

    \b
    Example:
      proxycheck status --unhealthy --json
    Exit: 0 when at least one proxy is healthy, 1 when none is, 2 on errors.
    """
    from .status_view import as_json as status_json
    from .status_view import render
    from .store import list_proxies, status_summary
    from .store._rows import utcnow
    from .store.reports import feedback_summary, guard_rail
    from .store.worker_leases import lease_summary
    from .verdict import parse_code

    settings = _settings(config)
    try:
        code = parse_code(code_text) if code_text else None
    except ValueError as exc:
        raise CliError(str(exc)) from None

    from .store.guard import guard_states, held_subnets

    def read(engine):
        return (status_summary(engine), list_proxies(engine, unhealthy_only=unhealthy, tag=tag, code=code),
                feedback_summary(engine, guard_rail(settings.worker)), lease_summary(engine, now=utcnow()),
                guard_states(engine, settings), held_subnets(engine))

    summary, rows, feedback, leases, guards, held = _read_database(settings, read)
    if as_json:
        click.echo(json.dumps(status_json(summary, rows, feedback, settings.probes.sticky_seconds, leases=leases,
                                          guards=guards, held=held), indent=2))
    else:
        render(summary, rows, Console(highlight=False), feedback, settings.probes.sticky_seconds, leases=leases,
               guards=guards, held=held)
    sys.exit(0 if summary.counts["healthy"] > 0 else EXIT_UNHEALTHY)


@cli.command()
@config_option
def token(config: str | None) -> None:
    """Print the HTTP endpoint's bearer token, for shell workers.

    \b
    Found as workers find it: $PROXYCHECK_TOKEN, then [http].token, then the file
    <state_dir>/http-token that `proxycheck run` writes on its first start (mode 0640: the
    daemon's group, e.g. proxycheck under systemd, may read it). Example:
      curl -H "Authorization: Bearer $(proxycheck token)" http://127.0.0.1:8181/proxy
    """
    from .http_token import worker_token

    try:
        click.echo(worker_token(_settings(config)))
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None


@cli.command()
@config_option
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 10000), help="Checks and reports to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: proxy, checks, reports (newest first).")
@click.argument("proxy", metavar="PROXY")
def history(config: str | None, limit: int, as_json: bool, proxy: str) -> None:
    """One proxy's recent checks and the worker reports about it.

    PROXY is its URL as `status` prints it (the masked password is fine).

    \b
    Example:
      proxycheck history 'http://user:***@203.0.113.7:3128' -n 50
    """
    from .errors import ProxyParseError
    from .proxy import parse_proxy_url
    from .status_view import history_json, render_history
    from .store.history import proxy_history

    settings = _settings(config)
    try:
        key = parse_proxy_url(proxy).key
    except ProxyParseError as exc:
        raise CliError(f"PROXY: {exc}") from None
    found = _read_database(settings, lambda engine: proxy_history(engine, key, limit=limit))
    if found is None:
        raise CliError(f"no proxy {key} in the database: see `proxycheck status` for the proxies it holds")
    if as_json:
        click.echo(json.dumps(history_json(found), indent=2))
    else:
        render_history(found, Console(highlight=False))


@cli.command("import")
@config_option
@click.option("--file", "-f", "files", multiple=True, type=click.Path(), metavar="CSV", help="CSV file of proxies (repeatable).")
@click.option("--strict", is_flag=True, help="Any bad CSV row is fatal.")
@click.argument("args", nargs=-1, metavar="[CSV|URL]...")
def import_(config: str | None, files: tuple[str, ...], strict: bool, args: tuple[str, ...]) -> None:
    """Add proxies to the database (new ones are checked at once by the daemon).

    \b
    Examples:
      proxycheck import proxies.csv
      proxycheck import --file proxies.csv socks5://198.51.100.2:1080
    Imported proxies are never disabled by source syncs; use [daemon].sources for lists you maintain.
    """
    from .sources import import_arguments

    settings = _settings(config)
    try:
        urls, csvs = import_arguments(args)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    csvs = list(files) + csvs
    if not urls and not csvs:
        raise CliError("nothing to import: give a CSV file or proxy URLs (see `proxycheck import --help`)")
    loaded = _load(urls, csvs)
    if loaded.errors and strict:
        raise CliError(f"{len(loaded.errors)} bad row(s); nothing imported because of --strict")
    proxies = loaded.deduplicated()
    _echo_capped([f"warning: {p}: {w}" for p in proxies for w in p.address_warnings()], "address warnings")
    from .store import add_proxies, make_engine  # after the input is known good: a bad one fails fast
    from .store.migrate import check_at_head

    url = settings.resolved_database_url
    try:
        _require_existing_sqlite(url)
        check_at_head(url)
        engine = make_engine(url, writer=True)
        try:
            report = add_proxies(engine, proxies, source="import", policy=settings.health,
                                 concurrency=settings.check.concurrency)
        finally:
            engine.dispose()
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"imported: {report.added} added, {report.updated + report.reenabled} updated, {report.unchanged} unchanged"
               + (f"; {len(loaded.errors)} bad row(s) skipped" if loaded.errors else ""))


def _load(urls: list[str], files: list[str]) -> LoadedProxies:
    """Proxies from URL arguments and CSV files; bad rows printed (capped), a bad URL fatal."""
    from .sources import load_inputs

    try:
        loaded = load_inputs(urls, files)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    for line in loaded.error_lines():
        click.echo(f"proxycheck: {line}", err=True)
    return loaded


def _echo_capped(lines: list[str], what: str, limit: int = 20) -> None:
    for line in lines[:limit]:
        click.echo(f"proxycheck: {line}", err=True)
    if len(lines) > limit:
        click.echo(f"proxycheck: … and {len(lines) - limit} more {what}", err=True)


@cli.group()
def db() -> None:
    """Create or migrate the database.

    \b
    Examples:
      proxycheck db upgrade
      proxycheck db current --config /etc/proxycheck/proxycheck.toml
    """


@db.command("upgrade")
@config_option
def db_upgrade(config: str | None) -> None:
    """Create or migrate the database to the latest schema (safe to repeat).

    \b
    Example:
      PROXYCHECK_DATABASE_URL=postgresql://proxycheck@db/proxycheck proxycheck db upgrade
    """
    from .store import upgrade

    settings = _settings(config)
    url = settings.resolved_database_url
    _ensure_sqlite_dir(url)
    try:
        before, after = upgrade(url)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    where = _mask_url(url)
    if before == after:
        click.echo(f"{where}: already at {after}")
    else:
        click.echo(f"{where}: migrated {before or 'empty'} -> {after}")


@db.command("current")
@config_option
def db_current(config: str | None) -> None:
    """Print the database's schema revision and whether it is the latest.

    \b
    Example:
      proxycheck db current --config /etc/proxycheck/proxycheck.toml
    Exit: 0 at the latest revision, 1 when `proxycheck db upgrade` is needed.
    """
    from .store import current_revision, head_revision

    settings = _settings(config)
    try:
        _require_existing_sqlite(settings.resolved_database_url)
        current = current_revision(settings.resolved_database_url)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    head = head_revision()
    click.echo(f"{current or 'empty'} (latest: {head})" + ("" if current == head else "; run `proxycheck db upgrade`"))
    sys.exit(0 if current == head else EXIT_UNHEALTHY)


def _read_database(settings: Settings, read: Callable[[Any], T]) -> T:
    """``read(engine)`` on a reader engine of an existing, up-to-date database; errors as one sentence."""
    from .store import make_engine
    from .store.migrate import check_at_head

    url = settings.resolved_database_url
    try:
        _require_existing_sqlite(url)
        check_at_head(url)
        engine = make_engine(url, writer=False)
        try:
            return read(engine)
        finally:
            engine.dispose()
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None


def _require_existing_sqlite(url: str) -> None:
    """Reading must not create an empty SQLite file where the user expected their database."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and not Path(u.database).exists():
        raise CliError(f"database {u.database} does not exist: run `proxycheck db upgrade` (and check --config / state_dir)")


def _ensure_sqlite_dir(url: str) -> None:
    """The state directory, created private (filemodes.py: 0700, or 0770 when the group shares)."""
    from sqlalchemy.engine import make_url

    from .filemodes import make_state_dir

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        make_state_dir(Path(u.database).parent)


@cli.command()
@click.argument("code")
def explain(code: str) -> None:
    """Explain an anti-captcha proxy error and how to fix it: proxycheck explain 29 (or ERROR_PROXY_TRANSPARENT)."""
    from .explain import render as render_explanation
    from .verdict import parse_code

    try:
        click.echo(render_explanation(parse_code(code)))
    except ValueError as exc:
        raise CliError(str(exc)) from None


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the temporary directory (config, CSV, database) and print where it is.")
def demo(keep: bool) -> None:
    """See the whole product work offline in a few seconds.

    \b
    Starts a local judge and small local proxies that each misbehave one way (plus two good
    ones), runs the daemon's round on a temporary database, prints `status` with every code
    25-29, 35, 36, 49 next to the proxy that caused it, shows what get_healthy_proxy() hands
    out, and cleans up. Example:
      proxycheck demo
    """
    from .demo import run_demo

    sys.exit(run_demo(keep=keep))


@cli.command()
@config_option
def doctor(config: str | None) -> None:
    """Check the set-up: config, database and migration, judge and targets, own IP, daemon alive.

    \b
    Each line says OK, or what is wrong and the command that fixes it. Example:
      proxycheck doctor --config /etc/proxycheck/proxycheck.toml
    """
    from .doctor import doctor_command

    sys.exit(doctor_command(config))


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        from .masking import mask_argument

        return mask_argument(url)


def main() -> None:
    from .masking import redact

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
