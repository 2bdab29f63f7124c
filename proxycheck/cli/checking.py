"""Commands that work without a database: ``check`` (one-shot verdicts), ``judge`` (serve the
judge), ``explain`` (an anti-captcha code), ``demo`` (the whole product offline), ``doctor``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from .. import loop
from .common import EXIT_UNAVAILABLE, EXIT_UNHEALTHY, CliError, config_option, load_proxies, settings_or_exit


@click.command()
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
    settings = settings_or_exit(config)
    if not urls and not files:
        raise CliError("nothing to check: give proxy URLs or --file CSV (see `proxycheck check --help`)")
    for text in urls:
        if "://" not in text and Path(text).exists():
            kind = "a directory" if Path(text).is_dir() else "a file"
            raise CliError(f"{text} is {kind}, not a proxy URL: give CSV files with --file {text}")
    loaded = load_proxies(list(urls), list(files))
    if loaded.errors and strict:
        raise CliError(f"{len(loaded.errors)} bad row(s); not checking anything because of --strict")
    proxies = loaded.deduplicated(by_identity=False)
    if not proxies:
        raise CliError("no usable proxies in the input")

    from ..checker import Checker  # after the input is known good: a bad one fails fast
    from ..output import render_check_table

    stderr = Console(stderr=True)
    progress_wanted = not as_json and stderr.is_terminal and len(proxies) > 1
    checker = Checker(settings)
    rnd = loop.run(_run_check(checker, proxies, concurrency, stderr if progress_wanted else None))
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


@click.command()
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
    from ..judge import JudgeOptions, parse_listen, serve_forever

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


@click.command()
@click.argument("code")
def explain(code: str) -> None:
    """Explain an anti-captcha proxy error and how to fix it: proxycheck explain 29 (or ERROR_PROXY_TRANSPARENT)."""
    from ..explain import render as render_explanation
    from ..verdict import parse_code

    try:
        click.echo(render_explanation(parse_code(code)))
    except ValueError as exc:
        raise CliError(str(exc)) from None


@click.command()
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
    from ..demo import run_demo

    sys.exit(run_demo(keep=keep))


@click.command()
@config_option
def doctor(config: str | None) -> None:
    """Check the set-up: config, database and migration, judge and targets, own IP, daemon alive.

    \b
    Each line says OK, or what is wrong and the command that fixes it. Example:
      proxycheck doctor --config /etc/proxycheck/proxycheck.toml
    """
    from ..doctor import doctor_command

    sys.exit(doctor_command(config))


COMMANDS = (check, judge, explain, demo, doctor)
