"""Commands of the daemon and its database: ``run`` (the daemon), ``import`` (add proxies),
``status`` (the fleet), ``history`` (one proxy), ``token`` (the HTTP endpoint's bearer token).
Rule: reads go through ``common.read_database`` (an existing database at the latest revision)."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console

from ..errors import ProxycheckError
from .common import (
    EXIT_UNHEALTHY,
    CliError,
    config_option,
    echo_capped,
    load_proxies,
    read_database,
    require_existing_sqlite,
    settings_or_exit,
)


@click.command()
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
    from ..daemon import run_daemon

    settings = settings_or_exit(config)
    try:
        code = run_daemon(settings, config_path=config, once=once)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    sys.exit(code)


@click.command()
@config_option
@click.option("--unhealthy", is_flag=True, help="Only unhealthy proxies.")
@click.option("--tag", help="Only proxies with this tag.")
@click.option("--code", "code_text", metavar="CODE", help="Only proxies failing with this code (29 or ERROR_PROXY_TRANSPARENT).")
@click.option("--country", metavar="CC", help="Only proxies whose exit was observed in this country (ISO code, [geo]).")
@click.option("--asn", "asn_text", metavar="ASN", help="Only proxies whose exit was observed in this AS (3320 or AS3320).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: summary and proxies (see docs/output.md).")
def status(config: str | None, unhealthy: bool, tag: str | None, code_text: str | None, country: str | None,
           asn_text: str | None, as_json: bool) -> None:
    """Show the fleet from the database (works whether or not the daemon runs).

    \b
    Example:
      proxycheck status --unhealthy --json
    Exit: 0 when at least one proxy is healthy, 1 when none is, 2 on errors.
    """
    from ..status_view import as_json as status_json
    from ..status_view import render
    from ..store import list_proxies, status_summary
    from ..store._rows import utcnow
    from ..store.guard import guard_states, held_subnets
    from ..store.reports import feedback_summary, guard_rail
    from ..store.worker_leases import lease_summary
    from ..verdict import parse_code
    from ..worker.params import make_filters

    settings = settings_or_exit(config)
    try:
        code = parse_code(code_text) if code_text else None
        where = make_filters(country=country, asn=asn_text)  # the worker filters' own checks
    except ValueError as exc:
        raise CliError(str(exc)) from None

    def read(engine):
        return (status_summary(engine), list_proxies(engine, unhealthy_only=unhealthy, tag=tag, code=code,
                                                     country=where.country, asn=where.asn, vantages=True),
                feedback_summary(engine, guard_rail(settings.worker)), lease_summary(engine, now=utcnow()),
                guard_states(engine, settings), held_subnets(engine))

    summary, rows, feedback, leases, guards, held = read_database(settings, read)
    if as_json:
        click.echo(json.dumps(status_json(summary, rows, feedback, settings.probes.sticky_seconds, leases=leases,
                                          guards=guards, held=held), indent=2))
    else:
        render(summary, rows, Console(highlight=False), feedback, settings.probes.sticky_seconds, leases=leases,
               guards=guards, held=held)
    sys.exit(0 if summary.counts["healthy"] > 0 else EXIT_UNHEALTHY)


@click.command()
@config_option
def token(config: str | None) -> None:
    """Print the HTTP endpoint's bearer token, for shell workers.

    \b
    Found as workers find it: $PROXYCHECK_TOKEN, then [http].token, then the file
    <state_dir>/http-token that `proxycheck run` writes on its first start (mode 0640: the
    daemon's group, e.g. proxycheck under systemd, may read it). Example:
      curl -H "Authorization: Bearer $(proxycheck token)" http://127.0.0.1:8181/proxy
    """
    from ..http_token import worker_token

    try:
        click.echo(worker_token(settings_or_exit(config)))
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None


@click.command()
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
    from ..errors import ProxyParseError
    from ..proxy import parse_proxy_url
    from ..status_view import history_json, render_history
    from ..store.history import proxy_history

    settings = settings_or_exit(config)
    try:
        key = parse_proxy_url(proxy).key
    except ProxyParseError as exc:
        raise CliError(f"PROXY: {exc}") from None
    found = read_database(settings, lambda engine: proxy_history(engine, key, limit=limit))
    if found is None:
        raise CliError(f"no proxy {key} in the database: see `proxycheck status` for the proxies it holds")
    if as_json:
        click.echo(json.dumps(history_json(found), indent=2))
    else:
        render_history(found, Console(highlight=False))


@click.command("import")
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
    from ..sources import import_arguments

    settings = settings_or_exit(config)
    try:
        urls, csvs = import_arguments(args)
    except ProxycheckError as exc:
        raise CliError(str(exc)) from None
    csvs = list(files) + csvs
    if not urls and not csvs:
        raise CliError("nothing to import: give a CSV file or proxy URLs (see `proxycheck import --help`)")
    loaded = load_proxies(urls, csvs)
    if loaded.errors and strict:
        raise CliError(f"{len(loaded.errors)} bad row(s); nothing imported because of --strict")
    proxies = loaded.deduplicated()
    echo_capped([f"warning: {p}: {w}" for p in proxies for w in p.address_warnings()], "address warnings")
    from ..store import add_proxies, make_engine  # after the input is known good: a bad one fails fast
    from ..store.migrate import check_at_head

    url = settings.resolved_database_url
    try:
        require_existing_sqlite(url)
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


COMMANDS = (run, import_, status, history, token)
