"""Benchmark: the daemon with N proxies configured — peak RSS, dispatch overhead per check, and
the database after a simulated day under the retention policy.

    python bench/daemon_bench.py --proxies 100000 [--database sqlite|postgresql] [--parts daemon,overhead,day]
    unshare --net sh -c 'ip link set lo up && python bench/daemon_bench.py --live --proxies 100000'

Three parts (bench/README.md, "daemon_bench.py", says how to read the tables):

1. ``daemon``: the installed CLI against a live ``proxycheck judge`` (trustme certificate,
   127.0.0.2). ``db upgrade``, then ``run --once`` over N proxies on closed loopback ports
   (refused at once, so code 25: the probes cost little and the daemon's own machinery shows), then
   the long-lived ``run`` for ``--long-seconds`` with its RSS read every second, then SIGTERM.
2. ``overhead``: the daemon's own CPU per check, two ways. (a) Subtraction: the ``--once`` daemon's
   CPU minus a bare ``Checker.check`` loop over the same proxies at the same concurrency, each
   net of its fixed start-up cost (the same command with 0 proxies). (b) Instrumented: the store
   calls the daemon makes per check (``claim_due`` in batches of C, ``health.advance``,
   ``record_results``) timed in this process on N proxies, plus the periodic jobs run once at N.
3. ``day``: a simulated day without the network: ``sync_source``, ``claim_due``,
   ``record_results`` with synthetic results, ``apply_retention`` every simulated hour, on a fake
   clock, for ``--day-proxies`` proxies (70% healthy, 30% refused), extrapolated linearly to N.
   Then the steady state the retention policy converges to: ``--steady-days`` of history bulk
   inserted for ``--steady-proxies`` proxies, one ``apply_retention``, what is left.

``--live`` replaces the three parts with one measurement (bench/daemon_live.py says exactly what):
the long-lived daemon's sustained checks/s and CPU per check against N live squid proxies, the
daemon on one core and the world on the other, inside a network namespace of its own.

Rules:
1. Only loopback. Every process we start is our child and is stopped by its PID. Each database is
   our own: a SQLite file in a temp dir, or a PostgreSQL database ``pcbench_<pid>_<part>`` that we
   create and drop (``--keep`` keeps both).
2. A measured daemon is a child process: ``wait4`` gives its CPU and peak RSS, /proc its RSS over
   time. In-process parts measure ``time.process_time`` (one thread) and, on PostgreSQL, the
   server backends' CPU from /proc (the server does half the work there).
3. Sizes are measured after a WAL checkpoint and VACUUM (SQLite), or a VACUUM (PostgreSQL; the
   steady state also after VACUUM FULL, the live-data floor).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from world import judge_targets  # bench/world.py: the same judge layout as check_bench

from proxycheck.config_targets import targets_toml
from proxycheck.store.exits import KEEP
from proxycheck.world import Child as WorldChild
from proxycheck.world import free_port, stop_all, tail

HERE = Path(__file__).resolve().parent
JUDGE_HOST = "127.0.0.2"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
# --live runs in a network namespace of its own, where 127.0.0.1:5432 is not the server: it
# reaches PostgreSQL through its Unix socket instead (pg_socket()).
PG_SOCKET_DIR = "/var/run/postgresql"
PG_HOST = {"url": "127.0.0.1:5432", "query": ""}


def pg_socket() -> None:
    """Talk to PostgreSQL through its Unix socket from here on."""
    global PG_ADMIN
    PG_ADMIN = f"postgresql://postgres@/test?host={PG_SOCKET_DIR}"
    PG_HOST.update(url="", query=f"?host={PG_SOCKET_DIR}")
CLOSED_PORTS = (9, 1, 7, 13, 19, 37, 79)  # probed: the first refused on every sample address wins
CLK_TCK = os.sysconf("SC_CLK_TCK")
# `run --once` claims until nothing is due, so a proxy whose re-check falls due before the round
# ends is checked again (README, daemon_bench finding 2). A refused proxy's first re-check is
# failing_interval away (120 s by default, shorter than a 100,000-proxy round), so the --once
# config pushes it past any round: every proxy is then checked exactly once.
ONCE_HEALTH = {"failing_interval": 3600.0, "max_interval": 3600.0}
CHILDREN: list[Child] = []  # every process we started, for the cleanup in main()


# -- small helpers -------------------------------------------------------------------------------
def proxycheck_cli() -> list[str]:
    script = Path(sys.executable).parent / "proxycheck"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from proxycheck.cli import main; sys.argv[0] = 'proxycheck'; main()"]


def child_env() -> dict[str, str]:
    # The daemon must read our config only, and never talk to a systemd of the host.
    return {k: v for k, v in os.environ.items() if not k.startswith("PROXYCHECK_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}


def refused(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 111  # ECONNREFUSED


def address(j: int) -> str:
    """Proxy j's host: 127.200.0.1, 127.200.0.2, ... (clear of 127.0.0.x and the squid bench's 127.42)."""
    return f"127.{200 + j // 64516}.{1 + (j // 254) % 254}.{1 + j % 254}"


def closed_port(n: int) -> int:
    samples = {address(0), address(n // 2), address(max(n - 1, 0)), address(12345 % max(n, 1))}
    for port in CLOSED_PORTS:
        if all(refused(h, port) for h in samples):
            return port
    raise SystemExit(f"none of ports {CLOSED_PORTS} refuses connections on {sorted(samples)}: something listens on 0.0.0.0")


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def mb(kb: float) -> float:
    return kb / 1024


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f}"


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) in value per minute."""
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


# -- children ------------------------------------------------------------------------------------
class Child(WorldChild):
    """A ``proxycheck.world.Child`` (spawned, stopped and reaped with ``wait4`` there) whose RSS is
    sampled every ``every`` seconds, with our cleanup list and the daemon's clean environment."""

    def __init__(self, name: str, argv: list[str], log: Path, every: float = 1.0) -> None:
        super().__init__(name, argv, log, env=child_env(), cwd=log.parent)
        self.every = every
        self.rss: list[tuple[float, int]] = []  # (seconds since start, KB)

    def spawn(self) -> Child:
        super().spawn()
        CHILDREN.append(self)
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        assert self.proc is not None
        while self.proc.returncode is None:
            kb = proc_rss_kb(self.proc.pid)
            if kb:
                self.rss.append((time.monotonic() - self.started, kb))
            time.sleep(self.every)

    def wait_ready(self, poll: float = 0.1) -> float:
        """Seconds from spawn until the daemon logged ``ready:``; SystemExit if it exits first."""
        while "ready: " not in self.log.read_text(errors="replace"):
            if not self.running():
                raise SystemExit(f"`proxycheck run` exited {self.returncode} before ready:\n{self.tail()}")
            time.sleep(poll)
        return self.wall

    @property
    def wall(self) -> float:
        return time.monotonic() - self.started

    @property
    def cpu_s(self) -> float:
        assert self.usage is not None
        return self.usage.ru_utime + self.usage.ru_stime

    @property
    def peak_rss_kb(self) -> int:
        assert self.usage is not None
        return self.usage.ru_maxrss  # KB on Linux

    def tail(self, lines: int = 15) -> str:
        return tail(self.log, lines)


def run_cli(args: list[str], log: Path, name: str, env: dict[str, str] | None = None) -> Child:
    child = Child(name, [*proxycheck_cli(), *args], log)
    child.env = {**child.env, **(env or {})}
    child.spawn()
    child.wait()
    if child.returncode != 0:
        raise SystemExit(f"`proxycheck {' '.join(args)}` exited {child.returncode}:\n{child.tail()}")
    return child


# -- databases -----------------------------------------------------------------------------------
class Databases:
    """Throwaway databases, one per use: SQLite files in ``workdir`` or PostgreSQL databases."""

    def __init__(self, kind: str, workdir: Path, keep: bool) -> None:
        self.kind, self.workdir, self.keep = kind, workdir, keep
        self.created: list[str] = []

    def new(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.db')}"
        import psycopg

        db = f"pcbench_{os.getpid()}_{name}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute(f'CREATE DATABASE "{db}"')
        self.created.append(db)
        return f"postgresql+psycopg://postgres@{PG_HOST['url']}/{db}{PG_HOST['query']}"

    def drop_all(self) -> None:
        if self.keep or not self.created:
            return
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for db in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # only ours, by name
        self.created.clear()


def pg_dbname(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[1]


def db_size(url: str, *, vacuum_full: bool = False) -> dict:
    """Bytes on disk: the whole database, and per table (indexes included); rows in ``checks``."""
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[1]
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            as_left = os.path.getsize(path)
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')"))
            tables: dict[str, int] = {}
            for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                table = owner.get(name, name)
                tables[table] = tables.get(table, 0) + size
            rows = conn.execute("SELECT COUNT(*) FROM checks").fetchone()[0]
        finally:
            conn.close()
        return {"total": os.path.getsize(path), "as_left": as_left, "tables": tables, "checks_rows": rows}
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("VACUUM FULL" if vacuum_full else "VACUUM")
        total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        tables = {t: conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]
                  for t in ("proxies", "checks", "instances")}
        rows = conn.execute("SELECT COUNT(*) FROM checks").fetchone()[0]
    return {"total": total, "as_left": total, "tables": tables, "checks_rows": rows}


def data_bytes(size: dict) -> int:
    return sum(size["tables"].get(t, 0) for t in ("proxies", "checks"))


class PgServerCpu:
    """CPU burnt by the PostgreSQL backends serving one database (read from /proc; we run as root
    next to the server). Backends are sampled every ``every`` s and the last value per PID kept,
    so a backend that exits loses at most its last interval."""

    def __init__(self, url: str | None, every: float = 1.0) -> None:
        self.url, self.every = url, every
        self.seen: dict[int, tuple[float, float]] = {}  # pid -> (first, last) CPU seconds
        self._initial: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PgServerCpu:
        if self.url and self.url.startswith("postgresql"):
            import psycopg

            self._conn = psycopg.connect(PG_ADMIN, autocommit=True)
            self._me = self._conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self.sample()
            self._thread.start()
        return self

    def sample(self) -> None:
        if self._thread is None:
            return  # SQLite: no server
        pids = [r[0] for r in self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", (pg_dbname(self.url), self._me))]
        for pid in pids:
            cpu = proc_cpu(pid)
            first = self.seen.get(pid, (cpu, cpu))[0]
            self.seen[pid] = (first, cpu)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __exit__(self, *exc: object) -> None:
        if self._thread:
            self._stop.set()
            self._thread.join()
            self.sample()
            self._conn.close()

    @property
    def cpu_s(self) -> float:
        # A backend first seen mid-run started during the run: all of its CPU counts.
        return sum(last - (first if pid in self._initial else 0.0) for pid, (first, last) in self.seen.items())

    def mark_initial(self) -> None:
        self._initial = set(self.seen)


# -- the world: judge, CSV, config -----------------------------------------------------------------
@dataclass
class World:
    workdir: Path
    n: int
    concurrency: int
    judge: Child | None = None
    targets: dict = field(default_factory=dict)
    port: int = 0

    def start(self) -> None:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(JUDGE_HOST)
        ca_path, chain, key = self.workdir / "ca.pem", self.workdir / "judge-chain.pem", self.workdir / "judge-key.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        cert.private_key_pem.write_to_path(str(key))
        with open(chain, "wb") as fh:
            for blob in cert.cert_chain_pems:
                fh.write(blob.bytes())
        http_port, tls_port = free_port(JUDGE_HOST), free_port(JUDGE_HOST)
        plain, tls = f"http://{JUDGE_HOST}:{http_port}", f"https://{JUDGE_HOST}:{tls_port}"
        self.targets = judge_targets(plain, tls, ca_path)
        self.judge = Child("judge", [*proxycheck_cli(), "judge", "--listen", f"{JUDGE_HOST}:{http_port}",
                                     "--tls-listen", f"{JUDGE_HOST}:{tls_port}", "--cert", str(chain), "--key", str(key)],
                           self.workdir / "judge.log", every=3600).spawn()
        deadline = time.monotonic() + 30
        for port in (http_port, tls_port):
            while refused(JUDGE_HOST, port):
                if not self.judge.running() or time.monotonic() > deadline:
                    raise SystemExit(f"the judge did not start:\n{self.judge.tail()}")
                time.sleep(0.05)
        self.port = closed_port(self.n)

    def stop(self) -> None:
        if self.judge:
            self.judge.stop(grace=10)

    def csv(self, n: int) -> Path:
        path = self.workdir / f"proxies-{n}.csv"
        if not path.exists():
            with open(path, "w") as fh:
                fh.write("type,address,port\n")
                fh.writelines(f"http,{address(j)},{self.port}\n" for j in range(n))
        return path

    def config(self, name: str, url: str, csv: Path, *, daemon: dict | None = None, health: dict | None = None,
               http: dict | None = None) -> Path:
        q = lambda s: '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731 - TOML string
        lines = [f"database_url = {q(url)}", f"state_dir = {q(self.workdir / 'state')}", "", targets_toml(self.targets),
                  "[check]", f"concurrency = {self.concurrency}", "", "[daemon]", f"sources = [{q(csv)}]"]
        lines += [f"{k} = {v}" for k, v in (daemon or {}).items()]
        if health:
            lines += ["", "[health]", *(f"{k} = {v}" for k, v in health.items())]
        if http:
            lines += ["", "[http]", *(f"{k} = {v}" for k, v in http.items())]
        path = self.workdir / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path


# -- part 1: the real daemon -------------------------------------------------------------------------
def run_once(world: World, dbs: Databases, n: int, name: str, *, profile: Path | None = None) -> dict:
    url = dbs.new(name)
    config = world.config(name, url, world.csv(n), health=ONCE_HEALTH)
    run_cli(["db", "upgrade", "--config", str(config)], world.workdir / f"{name}-upgrade.log", "db upgrade")
    argv = [*proxycheck_cli(), "run", "--once", "--config", str(config)]
    if profile:
        wrapper = world.workdir / "proxycheck_main.py"
        wrapper.write_text("import sys\nfrom proxycheck.cli import main\nsys.argv[0] = 'proxycheck'\nmain()\n")
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), str(wrapper), "run", "--once", "--config", str(config)]
    with PgServerCpu(url) as server:
        server.mark_initial()
        child = Child(f"run --once ({n})", argv, world.workdir / f"{name}.log", every=0.5).spawn()
        child.wait()
        wall = child.wall
    if child.returncode != 0:
        raise SystemExit(f"`proxycheck run --once` exited {child.returncode}:\n{child.tail()}")
    codes = db_codes(url)
    size = db_size(url)
    if size["checks_rows"] != n:
        print(f"  WARNING: `run --once` stored {size['checks_rows']:,} checks for {n:,} proxies", flush=True)
    return {"n": n, "url": url, "config": config, "wall": wall, "cpu": child.cpu_s,
            "user": child.usage.ru_utime, "sys": child.usage.ru_stime, "peak_rss_kb": child.peak_rss_kb,
            "server_cpu": server.cpu_s if url.startswith("postgresql") else None,
            "codes": codes, "size": size, "rss": child.rss}


def db_codes(url: str) -> dict:
    from sqlalchemy import func, select

    from proxycheck.store import make_engine
    from proxycheck.store.models import ProxyRow as P

    engine = make_engine(url, writer=False)
    try:
        with engine.begin() as conn:
            return {f"{s}/{c}": k for s, c, k in conn.execute(select(P.state, P.code, func.count()).group_by(P.state, P.code))}
    finally:
        engine.dispose()


def run_long(world: World, once: dict, seconds: float) -> dict:
    """The long-lived daemon on the --once database, after simulated downtime (everything overdue)."""
    from sqlalchemy import func, select, update

    from proxycheck.store import make_engine
    from proxycheck.store.models import CheckRow, ProxyRow

    url = once["url"]
    n = once["n"]
    config = world.config("long", url, world.csv(n),
                          daemon={"dispatch_interval": 0.25, "sync_interval": 30.0, "retention_interval": 30.0, "drain_grace": 10.0},
                          health={"interval": 60.0, "fast_interval": 1.0, "failing_interval": 1.0, "max_interval": 2.0})
    engine = make_engine(url, writer=True)
    try:
        with engine.begin() as conn:
            conn.execute(update(ProxyRow).values(next_check_at=datetime.now(UTC) - timedelta(hours=1)))
        with engine.begin() as conn:
            checks_before = conn.scalar(select(func.count()).select_from(CheckRow))
    finally:
        engine.dispose()
    log = world.workdir / "long.log"
    with PgServerCpu(url) as server:
        server.mark_initial()
        child = Child("run", [*proxycheck_cli(), "run", "--config", str(config)], log).spawn()
        ready_at = child.wait_ready()
        cpu_ready = proc_cpu(child.proc.pid)
        time.sleep(seconds)
        cpu_end = proc_cpu(child.proc.pid)
        window = child.wall - ready_at
        term_at = time.monotonic()
        rc = child.stop(grace=60)  # SIGTERM, then SIGKILL after 60 s
        exit_s = time.monotonic() - term_at
    engine = make_engine(url, writer=False)
    try:
        with engine.begin() as conn:
            checks_after = conn.scalar(select(func.count()).select_from(CheckRow))
    finally:
        engine.dispose()
    text = log.read_text(errors="replace")
    errors = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line][:5]
    in_window = [(t - ready_at, kb) for t, kb in child.rss if t >= ready_at]
    half = [p for p in in_window if p[0] >= window / 2]
    checks = checks_after - checks_before
    return {"ready_s": ready_at, "window": window, "checks": checks, "cpu_window": cpu_end - cpu_ready,
            "rss_ready_kb": in_window[0][1] if in_window else 0, "rss_end_kb": in_window[-1][1] if in_window else 0,
            "rss_max_kb": max((kb for _, kb in in_window), default=0), "peak_rss_kb": child.peak_rss_kb,
            "slope_kb_min": slope_per_min(half), "rc": rc, "exit_s": exit_s,
            "errors": errors, "rss": in_window, "server_cpu": server.cpu_s if url.startswith("postgresql") else None}


# -- part 2a: the bare checker loop (run as a child: ``daemon_bench.py _checker-loop``) ---------------
def checker_loop_main(config: str, csv: str, limit: int, concurrency: int) -> None:
    from proxycheck.checker import Checker
    from proxycheck.config import load_settings
    from proxycheck.sources import read_csv_file

    settings = load_settings(config)
    proxies = read_csv_file(csv).deduplicated()[:limit]  # the daemon reads the whole file too
    checker = Checker(settings)

    async def main() -> dict:
        status = await checker.preflight()
        if not status.ok:
            raise SystemExit(f"checker not ready: {status.reason}")
        it = iter(proxies)
        codes: dict[str, int] = {}

        async def worker() -> None:  # C workers over one iterator: at most C checks at a time
            for proxy in it:
                result = await checker.check(proxy, status.own_ips)
                codes[str(result.code)] = codes.get(str(result.code), 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return {"n": len(proxies), "codes": codes, "wall": time.perf_counter() - started}

    print(json.dumps(asyncio.run(main())))


def checker_loop(world: World, config: Path, n_csv: int, limit: int) -> dict:
    name = f"checker-loop-{limit}"
    child = Child(name, [sys.executable, str(Path(__file__).resolve()), "_checker-loop", str(config),
                         str(world.csv(n_csv)), str(limit), str(world.concurrency)],
                  world.workdir / f"{name}.log", every=0.5).spawn()
    child.wait()
    if child.returncode != 0:
        raise SystemExit(f"the checker loop exited {child.returncode}:\n{child.tail()}")
    out = json.loads(child.log.read_text().strip().splitlines()[-1])
    return {**out, "cpu": child.cpu_s, "peak_rss_kb": child.peak_rss_kb}


# -- synthetic results (parts 2b and 3) --------------------------------------------------------------
def refused_template() -> object:
    """A real ``Checker.check`` of a refused loopback proxy: the exact shape the daemon stores."""
    from proxycheck.checker import Checker
    from proxycheck.config import Settings
    from proxycheck.proxy import Proxy

    port = closed_port(1)
    proxy = Proxy("http", address(0), port, None, None, frozenset(), None)
    result = asyncio.run(Checker(Settings()).check(proxy, frozenset({"127.0.0.1"})))
    assert result.code == 25, result
    return result


def healthy_template(proxy) -> object:
    """A passing check as the probes word it (their ``ok(...)`` details), with realistic timings."""
    from proxycheck.result import CheckResult, ProbeOutcome

    who = f"HTTP proxy {proxy.address}"
    probes = (
        ProbeOutcome("tcp_connect", True, detail=f"TCP connect to {who} took 41 ms", elapsed_ms=41.3),
        ProbeOutcome("anonymity", True, detail="elite: exit IP 203.0.113.77", elapsed_ms=212.8),
        ProbeOutcome("ssl", True, detail="tunnel to www.google.com:443 and TLS (TLSv1.3) verified; target answered 204", elapsed_ms=388.1),
        ProbeOutcome("long_get", True, detail="a 2,048-byte GET came back 200", elapsed_ms=201.7),
        ProbeOutcome("images", True, detail="2 image(s), 9,421 bytes, intact", elapsed_ms=455.0),
        ProbeOutcome("ban", True, detail="the ban target answered 200: not banned", elapsed_ms=310.4),
    )
    return CheckResult(proxy=proxy, healthy=True, code=None, reason=None, detail=probes[1].detail, probe=None,
                       probes=probes, started_at=datetime.now(UTC), elapsed_ms=1609.3, exit_ip="203.0.113.77",
                       anonymity="elite", resolved_ip=proxy.host, warnings=())


def sim_proxies(m: int) -> list:
    """Public-looking proxies with credentials (as bought): 198.18.0.0/15, benchmarking space."""
    from proxycheck.proxy import Proxy

    return [Proxy("http", f"198.{18 + j // 64000}.{(j // 250) % 256}.{1 + j % 250}", 3128 + j % 7,
                  f"user{j:06d}", f"pw-{j * 7919 % 1000003:07d}", frozenset({"sim"}), None) for j in range(m)]


# -- part 2b: the store calls the daemon makes, instrumented ------------------------------------------
@dataclass
class Timer:
    cpu: float = 0.0
    wall: float = 0.0
    calls: int = 0

    def __call__(self, fn, *args, **kwargs):
        c, w = time.process_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.cpu += time.process_time() - c
            self.wall += time.perf_counter() - w
            self.calls += 1


def store_overhead(dbs: Databases, n: int, concurrency: int, limit: int, *, name: str = "store", profile: Path | None = None) -> dict:
    """N proxies synced; the daemon's per-check store calls for the first ``limit`` checks (their cost
    per check does not depend on how many checks came before); then the periodic jobs once at N."""
    from proxycheck import health, store
    from proxycheck.health import HealthPolicy
    from proxycheck.store.schedule import spread_overdue

    url = dbs.new(name)
    store.upgrade(url)
    engine = store.make_engine(url, writer=True)
    rng = random.Random(1)
    policy = HealthPolicy()
    template = refused_template()
    proxies = [dataclasses.replace(p, host=address(j)) for j, p in enumerate(sim_proxies(n))]
    t = {k: Timer() for k in ("sync_source (new)", "claim_due", "health.advance", "record_results",
                              "sync_source (unchanged)", "spread_overdue", "apply_retention", "status_summary")}
    owner = store.register_instance(engine)
    profiler = None
    with PgServerCpu(url) as server:
        server.mark_initial()
        t["sync_source (new)"](store.sync_source, engine, "csv:bench", proxies, datetime.now(UTC), policy=policy, rng=rng, spread=False)
        server.sample()
        srv_sync = server.cpu_s
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        checks = 0
        while checks < limit:
            claims = t["claim_due"](store.claim_due, engine, owner, min(concurrency, limit - checks), 180.0)
            if not claims:
                break
            now = datetime.now(UTC)
            items = []
            for claim in claims:
                result = dataclasses.replace(template, proxy=claim.proxy, started_at=now)
                tr = t["health.advance"](health.advance, claim.state, healthy=False, code=result.code, reason=result.reason,
                                         now=now, policy=policy, rng=rng)
                items.append((claim, result, tr))
            t["record_results"](store.record_results, engine, items, owner)
            checks += len(claims)
        if profiler:
            profiler.disable()
        server.sample()
        srv_loop = server.cpu_s - srv_sync
        # The periodic jobs, once each at N (they do not scale with checks, but with proxies).
        t["sync_source (unchanged)"](store.sync_source, engine, "csv:bench", proxies, datetime.now(UTC), policy=policy, rng=rng)
        spread = t["spread_overdue"](spread_overdue, engine, datetime.now(UTC) + timedelta(hours=2), 300.0, rng)
        t["apply_retention"](store.apply_retention, engine, datetime.now(UTC))
        t["status_summary"](store.status_summary, engine)
    engine.dispose()
    if profiler:
        profiler.dump_stats(str(profile))
    return {"n": n, "checks": checks, "timers": t, "spread_rows": spread,
            "server_loop": srv_loop if url.startswith("postgresql") else None}


# -- part 3: a simulated day, and the steady state ------------------------------------------------------
HEALTHY_SHARE = 0.7


def simulate_day(dbs: Databases, m: int, days: float, tick: float) -> dict:
    from proxycheck import health, store
    from proxycheck.health import HealthPolicy

    url = dbs.new("day")
    store.upgrade(url)
    engine = store.make_engine(url, writer=True)
    policy, rng = HealthPolicy(), random.Random(7)
    proxies = sim_proxies(m)
    healthy_keys = {p.key for j, p in enumerate(proxies) if j % 10 < HEALTHY_SHARE * 10}
    failing = refused_template()
    passing = healthy_template(proxies[0])
    t0 = datetime(2030, 1, 1, tzinfo=UTC)  # the fake clock; far from the real one on purpose
    end = t0 + timedelta(days=days)
    owner = store.register_instance(engine, now=t0)
    timers = {k: Timer() for k in ("claim_due", "record_results", "apply_retention")}
    checks = {True: 0, False: 0}
    retention_last: tuple[float, int] = (0.0, 0)
    deleted = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with PgServerCpu(url) as server:
        server.mark_initial()
        store.sync_source(engine, "csv:/sim/proxies.csv", proxies, t0, policy=policy, rng=rng, spread=True)
        from sqlalchemy import select

        from proxycheck.store.models import ProxyRow as P

        with engine.begin() as conn:
            due = dict(conn.execute(select(P.id, P.next_check_at)).all())
        now, next_retention = t0, t0 + timedelta(hours=1)
        while now < end:
            while True:
                claims = timers["claim_due"](store.claim_due, engine, owner, 500, 180.0, now=now)
                if not claims:
                    break
                items = []
                for claim in claims:
                    ok = claim.proxy.key in healthy_keys
                    result = dataclasses.replace(passing if ok else failing, proxy=claim.proxy, started_at=now)
                    tr = health.advance(claim.state, healthy=ok, code=result.code, reason=result.reason, now=now, policy=policy, rng=rng)
                    due[claim.proxy_id] = tr.next_check_at
                    items.append((claim, result, tr))
                    checks[ok] += 1
                timers["record_results"](store.record_results, engine, items, owner)
                if len(claims) < 500:
                    break
            if now >= next_retention:
                before = timers["apply_retention"].cpu
                deleted += timers["apply_retention"](store.apply_retention, engine, now)
                retention_last = (timers["apply_retention"].cpu - before, checks[True] + checks[False])
                next_retention += timedelta(hours=1)
            # Event-driven clock: jump to the next due check (at least one tick on), never past an hour mark.
            now = min(max(now + timedelta(seconds=tick), min(due.values())), next_retention)
        server.sample()
        server_cpu = server.cpu_s
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    engine.dispose()
    size = db_size(url)
    return {"m": m, "days": days, "tick": tick, "checks": checks, "size": size, "deleted": deleted,
            "cpu": cpu, "wall": wall, "timers": timers, "retention_last_cpu": retention_last[0],
            "server_cpu": server_cpu if url.startswith("postgresql") else None}


def steady_state(dbs: Databases, m: int, days: float) -> dict:
    """``days`` of history per proxy, bulk inserted (healthy every interval, failing every
    max_interval: the backed-off steady state), then one ``apply_retention``: what the policy keeps."""
    from sqlalchemy import func, insert, select

    from proxycheck import store
    from proxycheck.health import HealthPolicy
    from proxycheck.store.models import CheckRow as C
    from proxycheck.store.models import ProxyRow as P

    url = dbs.new("steady")
    store.upgrade(url)
    engine = store.make_engine(url, writer=True)
    policy, rng = HealthPolicy(), random.Random(11)
    proxies = sim_proxies(m)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    store.sync_source(engine, "csv:/sim/proxies.csv", proxies, now - timedelta(days=days), policy=policy, rng=rng, spread=False)
    with engine.begin() as conn:
        ids = dict(conn.execute(select(P.key, P.id)).all())
    failing, passing = refused_template(), healthy_template(proxies[0])
    start = now - timedelta(days=days)
    inserted = 0
    for j, proxy in enumerate(proxies):
        ok = j % 10 < HEALTHY_SHARE * 10
        template = passing if ok else failing
        step = policy.interval if ok else policy.max_interval
        rows, at = [], start + timedelta(seconds=rng.uniform(0, step))
        while at < now:
            rows.append(history_row(ids[proxy.key], template, at))
            at += timedelta(seconds=step * (1 + rng.uniform(-policy.jitter, policy.jitter)))
        with engine.begin() as conn:
            conn.execute(insert(C), rows)
        inserted += len(rows)
    cpu = time.process_time()
    deleted = store.apply_retention(engine, now)
    retention_cpu = time.process_time() - cpu
    with engine.begin() as conn:
        kept = {bool(h): (k, p) for h, k, p in conn.execute(
            select(C.healthy, func.count(), func.count(func.distinct(C.proxy_id))).group_by(C.healthy))}
    size = db_size(url, vacuum_full=True)
    # The next hourly pass at steady state: it reads everything kept to delete about one hour's worth.
    cpu, wall = time.process_time(), time.perf_counter()
    hourly_deleted = store.apply_retention(engine, now + timedelta(hours=1))
    hourly = (time.process_time() - cpu, time.perf_counter() - wall, hourly_deleted)
    engine.dispose()
    return {"m": m, "days": days, "inserted": inserted, "deleted": deleted, "kept": kept, "size": size,
            "retention_cpu": retention_cpu, "hourly": hourly}


def history_row(proxy_id: int, result, at: datetime) -> dict:
    """The ``checks`` row ``store.record_results`` writes for ``result``, checked at ``at``."""
    from proxycheck.store.leases import history_values

    return {**history_values(proxy_id, result, "0" * 32), "checked_at": at}


# -- report --------------------------------------------------------------------------------------------
def table(title: str, header: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    out = [f"\n{title}", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def profile_text(path: Path, title: str, top: int = 20) -> str:
    import io
    import pstats

    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    body = buf.getvalue()
    body = body[body.find("   ncalls"):] if "   ncalls" in body else body
    return f"\n{title} (cProfile, top {top} by own time; read shares, not absolute ms)\n{body.rstrip()}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_checker-loop":
        checker_loop_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxies", type=int, nargs="+", default=[100_000],
                    help="N: proxies configured (default 100000); --live takes several and measures each")
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--parts", default="daemon,overhead,day", help="comma-separated: daemon, overhead, day")
    ap.add_argument("--concurrency", type=int, default=200, help="[check] concurrency, and the claim batch of part 2b")
    ap.add_argument("--long-seconds", type=float, default=60.0, help="how long the long-lived daemon runs (0: skip)")
    ap.add_argument("--baseline-proxies", type=int, default=20_000,
                    help="proxies the bare checker loop checks; its CPU per check is scaled to N (default 20000)")
    ap.add_argument("--store-checks", type=int, default=20_000, help="checks timed in part 2b (default 20000)")
    ap.add_argument("--day-proxies", type=int, default=100, help="proxies in the simulated day (default 100)")
    ap.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    ap.add_argument("--tick", type=float, default=5.0, help="simulated dispatch interval, seconds (default 5)")
    ap.add_argument("--steady-proxies", type=int, default=20, help="proxies in the steady-state fill (default 20; 0: skip)")
    ap.add_argument("--steady-days", type=float, default=16.0, help="history days in the steady-state fill (default 16)")
    ap.add_argument("--profile", action="store_true", help="also cProfile the --once daemon (at min(N, 20000)) and the store loop")
    ap.add_argument("--keep", action="store_true", help="keep the work dir and databases")
    live = ap.add_argument_group("--live: the long-lived daemon against live squids (bench/daemon_live.py; "
                                 "run inside `unshare --net`)")
    live.add_argument("--live", action="store_true", help="only this measurement: sustained checks/s and CPU per check")
    live.add_argument("--squids", type=int, default=8, help="squid processes serving the N proxies (default 8)")
    live.add_argument("--live-port", type=int, default=24000, help="squid K listens on this port + K (default 24000)")
    live.add_argument("--warmup", type=float, default=30.0, help="seconds after READY before the window (default 30)")
    live.add_argument("--live-seconds", type=float, default=120.0, help="the measured window, seconds (default 120)")
    live.add_argument("--rate", type=float, default=333.0,
                      help="checks/s asked: [health].interval = max(1, N / rate) (default 333: 100,000 proxies every 300 s)")
    live.add_argument("--seed-margin", type=float, default=15.0,
                      help="the seeded fleet's first due time, seconds after seeding (covers the daemon's start; default 15)")
    live.add_argument("--exit-history", type=int, default=KEEP,
                      help=f"exit IP readings seeded per proxy, one per past visit (default {KEEP}, as many as the store "
                           f"keeps: a daemon that has run for {KEEP} intervals; 0: none, as before issue 21's fifth pass)")
    live.add_argument("--code", help="put this checkout first on the daemon's PYTHONPATH (a before/after A/B)")
    live.add_argument("--scrape-every", type=float, default=30.0,
                      help="seconds between /metrics scrapes while the daemon runs, as Prometheus would (default 30; 0: none)")
    live.add_argument("--sample", type=float, default=10.0, help="seconds between samples in the window (default 10)")
    live.add_argument("--flap-seconds", type=float, default=0.0,
                      help="then this many seconds of the judge killed and restarted, in segments alternating with "
                           "quiet ones (issue 16; 0: skip)")
    live.add_argument("--flap-segment", type=float, default=12.0, help="seconds per quiet or flapping segment (default 12)")
    live.add_argument("--flap-every", type=float, default=6.0, help="seconds between two judge kills (default 6)")
    live.add_argument("--flap-down", type=float, default=1.5, help="seconds the judge stays dead each time (default 1.5)")
    args = ap.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if len(args.proxies) > 1 and not args.live:
        ap.error("several --proxies need --live")
    n = args.proxies[0]

    workdir = Path(tempfile.mkdtemp(prefix="proxycheck-daemon-bench-"))
    dbs = Databases(args.database, workdir, args.keep)
    world = World(workdir, max(args.proxies), args.concurrency)
    began = time.monotonic()
    print(f"daemon_bench: N={n:,} database={args.database} concurrency={args.concurrency} "
          f"cpus={len(os.sched_getaffinity(0))} load={os.getloadavg()[0]:.1f} workdir={workdir}", flush=True)
    out: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below stops our children
    try:
        once = empty = loop = loop0 = long = None
        if args.live:
            import daemon_live  # bench/daemon_live.py

            world.start()
            out += daemon_live.run_live(world, args, sys.modules[__name__])
            parts = set()
        if parts & {"daemon", "overhead"}:
            world.start()
        if "daemon" in parts or "overhead" in parts:
            empty = run_once(world, dbs, 0, "once0")
            print(f"  run --once, 0 proxies: {empty['wall']:.1f} s", flush=True)
            once = run_once(world, dbs, n, "once")
            print(f"  run --once, {n:,} proxies: {once['wall']:.1f} s, {once['codes']}", flush=True)
        if "daemon" in parts:
            rows = []
            for r in (empty, once):
                rate = r["n"] / r["wall"] if r["n"] else 0
                srv = f"{r['server_cpu']:.1f}" if r["server_cpu"] is not None else "-"
                rows.append([f"{r['n']:,}", f"{r['wall']:.1f}", f"{rate:,.0f}", f"{r['user']:.1f} + {r['sys']:.1f}", srv,
                             f"{mb(r['peak_rss_kb']):.1f}", fmt_bytes(r["size"]["total"]), f"{r['size']['checks_rows']:,}"])
            kb_per_proxy = (once["peak_rss_kb"] - empty["peak_rss_kb"]) / n if n else 0
            out.append(table(f"1. `proxycheck run --once` ({args.database}, concurrency {args.concurrency})",
                             ["proxies", "wall s", "checks/s", "CPU s (user + sys)", "DB server CPU s", "peak RSS MB",
                              "DB size", "checks rows"], rows))
            out.append(f"   peak RSS grows {kb_per_proxy:.2f} KB per configured proxy; verdicts: {once['codes']}")
            if args.long_seconds > 0:
                long = run_long(world, once, args.long_seconds)
                print(f"  run: {long['window']:.0f} s, {long['checks']:,} checks, exit {long['rc']}", flush=True)
                srv = f", DB server CPU {long['server_cpu']:.1f} s" if long["server_cpu"] is not None else ""
                out.append(table(f"1b. long-lived `proxycheck run` on the same {n:,} proxies, all overdue at start "
                                 f"(dispatch_interval 0.25 s, sync and retention every 30 s)",
                                 ["start to ready s", "window s", "checks", "checks/s", "CPU ms/check", "RSS at ready MB",
                                  "RSS max MB", "RSS end MB", "RSS slope (2nd half) MB/min", "SIGTERM to exit s", "exit code"],
                                 [[f"{long['ready_s']:.1f}", f"{long['window']:.0f}", f"{long['checks']:,}",
                                   f"{long['checks'] / long['window']:,.0f}",
                                   f"{1000 * long['cpu_window'] / max(long['checks'], 1):.2f}",
                                   f"{mb(long['rss_ready_kb']):.1f}", f"{mb(long['rss_max_kb']):.1f}", f"{mb(long['rss_end_kb']):.1f}",
                                   f"{mb(long['slope_kb_min']):+.2f}", f"{long['exit_s']:.1f}", long["rc"]]]))
                series = " ".join(f"{mb(kb):.0f}" for _, kb in long["rss"][:: max(1, len(long["rss"]) // 20)])
                out.append(f"   RSS MB over the window (every ~{max(1, len(long['rss']) // 20)} s): {series}{srv}")
                out.append(f"   errors in the daemon's log: {long['errors'] or 'none'}")
        if "overhead" in parts:
            m = min(n, args.baseline_proxies)
            loop0 = checker_loop(world, once["config"], n, 0)
            loop = checker_loop(world, once["config"], n, m)
            print(f"  checker loop: {m:,} proxies {loop['wall']:.1f} s {loop['codes']}", flush=True)
            check_cpu = (loop["cpu"] - loop0["cpu"]) / m
            daemon_net = once["cpu"] - empty["cpu"]
            machinery = daemon_net - check_cpu * n
            srv = once["server_cpu"] or 0.0
            out.append(table("2a. dispatch overhead by subtraction (CPU, net of each command's 0-proxy run)",
                             ["", "CPU s", "ms/check"],
                             [["`run --once` daemon, N proxies", f"{daemon_net:.1f}", f"{1000 * daemon_net / n:.3f}"],
                              [f"bare Checker.check loop ({m:,} proxies, scaled to N)", f"{check_cpu * n:.1f}", f"{1000 * check_cpu:.3f}"],
                              ["**daemon machinery** (difference)", f"{machinery:.1f}", f"**{1000 * machinery / n:.3f}**"],
                              *([["PostgreSQL server, for the daemon", f"{srv:.1f}", f"{1000 * srv / n:.3f}"]] if once["server_cpu"] is not None else [])]))
            st = store_overhead(dbs, n, args.concurrency, args.store_checks)
            rows = []
            per_check = ("claim_due", "health.advance", "record_results")
            for name, tm in st["timers"].items():
                scope = "per check" if name in per_check else "once at N"
                denom = st["checks"] if name in per_check else 1
                unit = 1000 * tm.cpu / denom
                cost = f"{unit:.3f} ms {scope}" if name in per_check else f"{tm.cpu:.2f} s {scope}"
                if name == "spread_overdue":
                    cost = f"{1000 * tm.cpu / max(st['spread_rows'], 1):.3f} ms per overdue row ({st['spread_rows']:,} rows)"
                rows.append([name, tm.calls, f"{tm.cpu:.2f}", f"{tm.wall:.2f}", cost])
            total = sum(st["timers"][k].cpu for k in per_check)
            rows.append(["**per-check total**", "", f"{total:.2f}", f"{sum(st['timers'][k].wall for k in per_check):.2f}",
                         f"**{1000 * total / st['checks']:.3f} ms per check**"])
            if st["server_loop"] is not None:
                rows.append(["PostgreSQL server (claim + record)", "", f"{st['server_loop']:.2f}", "", f"{1000 * st['server_loop'] / st['checks']:.3f} ms per check"])
            if args.profile:
                prof, k = workdir / "store.prof", min(n, 20_000)
                store_overhead(dbs, k, args.concurrency, k, name="storeprof", profile=prof)
                out.append(profile_text(prof, f"profile: the store loop on {k:,} proxies (claim_due, health.advance, record_results)"))
            out.append(table(f"2b. the store calls the daemon makes, in-process: {n:,} proxies, {st['checks']:,} checks timed "
                             f"({args.database}, claim batch {args.concurrency}, one record_results per claim batch)",
                             ["call", "calls", "CPU s", "wall s", "cost"], rows))
        if args.profile and parts & {"daemon", "overhead"}:
            prof = workdir / "once.prof"
            k = min(n, 20_000)
            run_once(world, dbs, k, "onceprof", profile=prof)
            out.append(profile_text(prof, f"profile: `run --once` on {k:,} proxies, main thread only (store calls run in to_thread workers)"))
        if "day" in parts:
            day = simulate_day(dbs, args.day_proxies, args.days, args.tick)
            print(f"  simulated day: {day['wall']:.0f} s", flush=True)
            m, checks = day["m"], day["checks"]
            total_checks = checks[True] + checks[False]
            data = data_bytes(day["size"])
            rows_kept = day["size"]["checks_rows"]
            healthy_m = sum(1 for j in range(m) if j % 10 < HEALTHY_SHARE * 10)
            srv = f" + DB server {day['server_cpu']:.0f} s" if day["server_cpu"] is not None else ""
            out.append(table(f"3. one simulated day, {m:,} proxies ({HEALTHY_SHARE:.0%} healthy, the rest refused: code 25), "
                             f"default [health] and retention, tick {args.tick:g} s ({args.database})",
                             ["", f"simulated ({m:,})", f"extrapolated to N={n:,}"],
                             [["checks in the day", f"{total_checks:,}", f"{total_checks * n / m:,.0f}"],
                              ["checks per healthy / failing proxy", f"{checks[True] / healthy_m:.0f} / {checks[False] / max(m - healthy_m, 1):.0f}", ""],
                              ["rows in `checks` at the end", f"{rows_kept:,}", f"{rows_kept * n / m:,.0f}"],
                              ["rows deleted by retention", f"{day['deleted']:,}", ""],
                              ["DB size (checkpointed, VACUUMed)", fmt_bytes(day["size"]["total"]), fmt_bytes(day["size"]["total"] * n / m)],
                              ["`checks` + `proxies` (tables + indexes)", fmt_bytes(data), fmt_bytes(data * n / m)],
                              ["bytes per proxy / per `checks` row", f"{data / m:,.0f} / {day['size']['tables'].get('checks', 0) / max(rows_kept, 1):,.0f}", ""],
                              ["store CPU per simulated check: claim_due + record_results",
                               f"{1000 * day['timers']['claim_due'].cpu / total_checks:.3f} + {1000 * day['timers']['record_results'].cpu / total_checks:.3f} ms", ""],
                              ["last hourly apply_retention, CPU", f"{day['retention_last_cpu']:.2f} s", f"{day['retention_last_cpu'] * n / m:.0f} s"],
                              ["bench run time", f"{day['wall']:.0f} s (CPU {day['cpu']:.0f} s{srv})", ""]]))
            if args.steady_proxies > 0:
                ss = steady_state(dbs, args.steady_proxies, args.steady_days)
                print(f"  steady state: {ss['inserted']:,} rows inserted", flush=True)
                k = ss["m"]
                healthy_k = sum(1 for j in range(k) if j % 10 < HEALTHY_SHARE * 10)
                kept_ok, kept_fail = ss["kept"].get(True, (0, 0))[0], ss["kept"].get(False, (0, 0))[0]
                sdata = data_bytes(ss["size"])
                out.append(table(f"3b. steady state: {args.steady_days:g} days of history for {k} proxies (healthy every 300 s, "
                                 f"failing every 3600 s), then one apply_retention (VACUUM FULL on PostgreSQL)",
                                 ["", f"measured ({k})", f"extrapolated to N={n:,}"],
                                 [["rows inserted / deleted", f"{ss['inserted']:,} / {ss['deleted']:,}", ""],
                                  ["rows kept per healthy proxy", f"{kept_ok / healthy_k:.0f}", ""],
                                  ["rows kept per failing proxy", f"{kept_fail / max(k - healthy_k, 1):.0f}", ""],
                                  ["rows in `checks`", f"{ss['size']['checks_rows']:,}", f"{ss['size']['checks_rows'] * n / k:,.0f}"],
                                  ["`checks` + `proxies` (tables + indexes)", fmt_bytes(sdata), fmt_bytes(sdata * n / k)],
                                  ["bytes per proxy", f"{sdata / k:,.0f}", ""],
                                  ["next hourly apply_retention: rows deleted", f"{ss['hourly'][2]:,}", f"{ss['hourly'][2] * n / k:,.0f}"],
                                  ["next hourly apply_retention: CPU / wall", f"{ss['hourly'][0]:.2f} s / {ss['hourly'][1]:.2f} s",
                                   f"{ss['hourly'][0] * n / k:,.0f} s / {ss['hourly'][1] * n / k:,.0f} s"]]))
    finally:
        stop_all(CHILDREN, grace=10)
        world.stop()
        dbs.drop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(out))
    print(f"\ntotal bench time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
