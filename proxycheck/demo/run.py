"""``proxycheck demo``: the whole product on loopback in a few seconds, with no network at all.

It starts a judge (HTTP and HTTPS, with a CA made at run time) and the proxies in ``FLEET``,
each misbehaving one way; writes a config, a CSV and a SQLite database into a temporary
directory; runs one daemon round (``proxycheck run --once``, in-process); prints ``proxycheck
status``; lets a worker process ask for healthy proxies; stops everything and removes the
directory (``keep=True`` leaves the directory and says where it is).

Rules:
1. ``FLEET`` is the table: a label naming the misbehaviour, the server that stages it, and the
   verdict a correct checker gives. The exit code says whether every row got its verdict.
2. Addresses tell who is who: the checker is 127.0.0.1, the judge 127.0.3.1, the proxy that
   causes code N listens on 127.0.3.N and leaves from 127.0.4.N (good ones: .10 and .11).
3. Everything started is stopped, and everything written removed, on every path out.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

from rich.console import Console

from .. import loop
from ..config import judge_targets_toml, load_settings
from ..daemon import Daemon
from ..errors import ProxycheckError
from ..judge import Judge
from ..status_view import render
from ..store import list_proxies, make_engine, status_summary, upgrade
from ..world import WorldError
from ..world.judge import start_judge
from ..world.servers import Behaviour, Blackhole, ForwardProxy, RefusedPort, SilentListener

JUDGE_IP = "127.0.3.1"
DEMO_LOGIN = ("demo", "right-pass")
EXPECTED_CODES = (25, 26, 27, 28, 29, 35, 36, 49)

def listen_ip(slot: int) -> str:
    return f"127.0.3.{slot}"


def egress_ip(slot: int) -> str:
    return f"127.0.4.{slot}"


@dataclass(frozen=True)
class DemoProxy:
    """One row: where it listens, what it does wrong, and what the checker must say about it."""

    slot: int
    label: str
    kind: str  # "proxy" (ForwardProxy), "refused", "blackhole", "silent"
    code: int | None  # expected anti-captcha code; None = healthy
    reason: str | None  # expected verdict.REASONS key
    behaviour: Behaviour = Behaviour()
    login: tuple[str, str] | None = None  # what the proxy list gives for it

    @property
    def host(self) -> str:
        return listen_ip(self.slot)


BANNED_SLOT = 28

FLEET: tuple[DemoProxy, ...] = (
    DemoProxy(10, "demo: good, anonymous (adds Via)", "proxy", None, None, Behaviour(via=True)),
    DemoProxy(11, "demo: good, elite", "proxy", None, None),
    DemoProxy(25, "demo: refuses connections", "refused", 25, "connect_refused"),
    DemoProxy(26, "demo: connect never completes", "blackhole", 26, "connect_timeout"),
    DemoProxy(27, "demo: accepts, never answers", "silent", 27, "read_timeout"),
    DemoProxy(BANNED_SLOT, "demo: exit IP banned by target", "proxy", 28, "banned"),
    DemoProxy(29, "demo: leaks client IP", "proxy", 29, "ip_leaked", Behaviour(leak_client_ip=True)),
    DemoProxy(35, "demo: blocks images", "proxy", 35, "image_blocked", Behaviour(block_images=True)),
    DemoProxy(36, "demo: rejects CONNECT", "proxy", 36, "connect_rejected", Behaviour(reject_connect=True)),
    DemoProxy(37, "demo: rejects long GETs", "proxy", 36, "long_get_rejected", Behaviour(max_request_line=1024)),
    DemoProxy(49, "demo: wants other credentials", "proxy", 49, "auth_rejected", Behaviour(credentials=DEMO_LOGIN),
              login=(DEMO_LOGIN[0], "wrong-pass")),
)


def _server(row: DemoProxy):
    if row.kind == "proxy":
        return ForwardProxy(row.host, egress_ip(row.slot), row.behaviour)
    return {"refused": RefusedPort, "blackhole": Blackhole, "silent": SilentListener}[row.kind](row.host)


def run_demo(*, keep: bool = False, out: TextIO | None = None) -> int:
    """Run the demo; 0 when every proxy got its expected verdict and only good ones are served.

    ``out`` defaults to the ``sys.stdout`` of the moment of the call."""
    out = sys.stdout if out is None else out
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="proxycheck-demo-"))
    ok = False
    try:
        with _quiet_daemon_logs():
            ok = loop.run(_demo(workdir, out))
    except (WorldError, ProxycheckError) as exc:
        print(f"proxycheck demo: {exc}", file=out)
    finally:
        if keep:
            print(f"\nkept {workdir} (the proxies and the judge are stopped). Look again with:\n"
                  f"  proxycheck status --config {workdir / 'proxycheck.toml'}", file=out)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    verdict = "every expected verdict appeared" if ok else "FAILED: see above"
    print(f"\ndemo finished in {elapsed:.1f} s: {verdict}", file=out, flush=True)
    return 0 if ok else 1


async def _demo(workdir: Path, out: TextIO) -> bool:
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    say("proxycheck demo: a judge and 11 small proxies on loopback, each misbehaving one way; no network needed.")
    async with contextlib.AsyncExitStack() as stack:
        t = time.monotonic()
        judge = await _start_judge(workdir, stack)
        servers = {}
        for row in FLEET:
            server = _server(row)
            await server.start()
            stack.push_async_callback(server.stop)
            servers[row.slot] = server
        say(f"\n1. Started in {time.monotonic() - t:.1f} s (the judge's certificate authority was made just now):")
        say(f"   judge {judge.http_url} and {judge.https_url}; it treats exit {egress_ip(BANNED_SLOT)} as banned")
        for row in FLEET:
            expect = "healthy" if row.code is None else f"code {row.code} ({row.reason})"
            say(f"   {row.host}:{servers[row.slot].port:<6} {row.label:<34} expect {expect}")

        config = _write_files(workdir, judge, servers)
        settings = load_settings(str(config))
        url = settings.resolved_database_url
        Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
        before, after = await asyncio.to_thread(upgrade, url)
        say(f"\n2. Config {config.name}, proxy list proxies.csv, SQLite database state/proxycheck.db in {workdir}")
        say(f"   $ proxycheck db upgrade      migrated {before or 'empty'} -> {after}")
        t = time.monotonic()
        daemon = Daemon(settings, config_path=str(config), once=True)
        await daemon.run()
        say(f"   $ proxycheck run --once      {daemon.checks_done} proxies checked in {time.monotonic() - t:.1f} s"
            + ("" if daemon.status.ok else f"; checker DEGRADED: {daemon.status.reason}"))

        say("\n3. $ proxycheck status")
        rows = await asyncio.to_thread(_show_status, url, daemon.last_round_at, out)
        verdicts_ok = _compare(rows, say)

        say("\n4. A worker process asks for proxies (it finds the database through PROXYCHECK_CONFIG):")
        served_ok = await asyncio.to_thread(_ask_like_a_worker, config, url, servers, say)
    return verdicts_ok and served_ok


async def _start_judge(workdir: Path, stack: contextlib.AsyncExitStack) -> Judge:
    judge, _ = await asyncio.to_thread(start_judge, workdir, JUDGE_IP, ban_ips=frozenset({egress_ip(BANNED_SLOT)}))
    stack.push_async_callback(asyncio.to_thread, judge.stop)
    return judge


def _write_files(workdir: Path, judge: Judge, servers: dict) -> Path:
    with open(workdir / "proxies.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["url", "label"])
        for row in FLEET:
            userinfo = f"{row.login[0]}:{row.login[1]}@" if row.login else ""
            writer.writerow([f"http://{userinfo}{row.host}:{servers[row.slot].port}", row.label])
    http, https = judge.http_url, judge.https_url
    config = workdir / "proxycheck.toml"
    config.write_text("\n".join([
        "# written by `proxycheck demo`: every target is the demo's judge on loopback",
        'state_dir = "state"',
        "",
        judge_targets_toml(http, https, "ca.pem"),
        "[timeouts]  # loopback answers in milliseconds; short timeouts keep the demo short",
        "connect = 1.0",
        "read = 2.0",
        "probe = 4.0",
        "",
        "[daemon]",
        'sources = ["proxies.csv"]',
        "",
    ]))
    return config


def _show_status(url: str, last_round_at: datetime | None, out: TextIO) -> list:
    engine = make_engine(url, writer=False)
    try:
        summary = status_summary(engine)
        rows = list_proxies(engine)
    finally:
        engine.dispose()
    # The --once round's daemon has exited, so status counts no live instance; say when it ran.
    summary = replace(summary, last_round_at=summary.last_round_at or last_round_at)
    render(summary, rows, Console(file=out, highlight=False))
    return rows


def _compare(rows: list, say) -> bool:
    """Every FLEET row got its verdict; says which did not."""
    by_label = {r.proxy.label: r for r in rows}
    wrong = []
    for row in FLEET:
        got = by_label.get(row.label)
        if got is None:
            wrong.append(f"{row.label}: not in the database")
            continue
        expected = ("healthy", None, None) if row.code is None else ("unhealthy", row.code, row.reason)
        actual = (got.display_state, got.health.code, got.health.reason)
        if actual != expected:
            wrong.append(f"{row.label}: expected {_verdict(*expected)}, got {_verdict(*actual)}")
    for line in wrong:
        say(f"   MISMATCH {line}")
    seen = sorted({r.health.code for r in rows if r.health.code})
    missing = [c for c in EXPECTED_CODES if c not in seen]
    if missing:
        say(f"   codes that did not appear: {', '.join(map(str, missing))}")
    else:
        say(f"   every code appeared, each next to the proxy that caused it: {' '.join(map(str, EXPECTED_CODES))}")
    return not wrong and not missing


def _verdict(state: str, code: int | None, reason: str | None) -> str:
    return state if code is None else f"{state} {code} ({reason})"


_WORKER_SNIPPET = (
    "from proxycheck import get_healthy_proxy, NoHealthyProxy\n"
    "for _ in range(6):\n"
    "    try:\n"
    "        p = get_healthy_proxy()\n"
    "    except NoHealthyProxy as exc:\n"
    "        print('NONE', exc, sep='\\t'); break\n"
    "    print(p.host, p.port, sep='\\t')\n"
)


def _ask_like_a_worker(config: Path, url: str, servers: dict, say) -> bool:
    """A separate process, as a worker would be, asks six times; only good proxies may come back."""
    call = "get_healthy_proxy()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYCHECK_")}
    env.update(PROXYCHECK_CONFIG=str(config), PROXYCHECK_DATABASE_URL=url)
    try:
        proc = subprocess.run([sys.executable, "-c", _WORKER_SNIPPET], cwd=config.parent, env=env,
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        say("   the worker process did not answer within 60 s")
        return False
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        say(f"   the worker process failed: {last}")
        return False
    by_address = {(row.host, servers[row.slot].port): row for row in FLEET}
    served: list[DemoProxy] = []
    say(f"   >>> {call}   x6")
    for line in proc.stdout.splitlines():
        host, _, port = line.partition("\t")
        if host == "NONE":
            say(f"   none: {port}")
            return False
        row = by_address.get((host, int(port) if port.isdigit() else -1))
        if row is None:
            say(f"   {host}:{port}  (not a demo proxy?)")
            return False
        served.append(row)
        say(f"   http://{host}:{port}  {row.label}")
    good = {row.slot for row in FLEET if row.code is None}
    bad = [row for row in served if row.code is not None]
    if bad or not served:
        say(f"   WRONG: served {', '.join(r.label for r in bad) or 'nothing'}")
        return False
    missing = good - {row.slot for row in served}
    note = "" if not missing else " (random picks; the other good one was simply not drawn)"
    say(f"   only the {len(good)} good proxies are served; the {len(FLEET) - len(good)} bad ones never are{note}")
    return True


@contextlib.contextmanager
def _quiet_daemon_logs() -> Iterator[None]:
    """The demo narrates itself: the daemon's INFO lines would only interleave with it (-v keeps them)."""
    logger = logging.getLogger("proxycheck.daemon")
    previous = logger.level
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)
