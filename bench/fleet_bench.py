"""Benchmark: how many claims + writes per second one PostgreSQL takes from a fleet of checkers.

    python bench/fleet_bench.py --proxies 1000000 --daemons 1 2 4 --seconds 30
    python bench/fleet_bench.py --part retention --proxies 100000 --daemons 2
    python bench/fleet_bench.py --part sqlite-retention --proxies 100000
    python bench/fleet_bench.py --code /tmp/pc-main ...   # the stub daemons on another checkout (A/B)

**Near-free probes, clearly a stub.** Each "daemon" is a child process that runs the daemon's
real store path and nothing else: ``store.claim_due`` (the dispatcher's call, ``--claim``
proxies at a time) on one thread, and on another the writer's ``write_results`` (batches of
``--batch``, ``health.advance`` per result, exit readings, probe results, history), exactly as
``proxycheck run`` makes them (daemon/dispatcher.py, daemon/writer.py). The checker is replaced
by a canned verdict: a steady-state healthy check (tcp_connect, anonymity, ssl, long_get ran;
images and ban carried forward, as with the default probe schedules) for 90 % of proxies and a
refused connect (code 25) for the rest. No network, no probes: what is left is the database's
side of a check, which is what this bench is about (the daemon's own CPU per check is
``daemon_bench.py --live``'s).

Two parts:

1. ``throughput`` (default): N proxies all overdue; 1, 2, 4 ... daemons claim and write as fast
   as they can for ``--seconds``. Per step: checks written/s, the database server's CPU per check
   (our database's backends, from /proc), WAL bytes per check (``pg_stat_wal``), what backends
   waited on (``pg_stat_activity`` sampled every 50 ms), ungranted locks (``pg_locks``),
   connections per daemon, and claim/write call latencies. Between steps every proxy is made
   overdue again and the tables vacuumed (this server runs with autovacuum off).
2. ``retention``: N proxies due at a steady rate (``--rate``), ``--history-hours`` of history per
   proxy (one row per 300 s, as the default interval writes it), ``--daemons`` daemons
   claiming every ``--dispatch-interval``. Dispatch lag (how late a proxy is claimed: claim time
   minus its ``next_check_at``) and the claim call's duration, p50/p99, in a window without and a
   window with ``store.apply_retention`` running; the retention pass's time, rows, WAL and locks.

Rules: only loopback; each database is our own (``pcfleet_<pid>``, dropped at the end unless
``--keep``); every process we start is our child and is stopped by its PID. CPU figures are
CPU time (honest under load); rates are wall-clock and depend on what else runs on the box.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from daemon_bench import proc_cpu  # bench/daemon_bench.py

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"  # --server shared; --server tuned: our own cluster
# What docs/sizing.md recommends for a fleet's PostgreSQL (the rest are PostgreSQL 15's defaults):
# checkpoints far enough apart that a proxy row's page is written whole (a full-page image) once
# per several checks rather than once per check, those images compressed, autovacuum on.
TUNED = {"max_wal_size": "16GB", "checkpoint_timeout": "15min", "wal_compression": "lz4", "autovacuum": "on",
         "shared_buffers": "1GB", "max_connections": "200"}
HEALTHY_SHARE = 0.9
HERE = Path(__file__).resolve().parent


# -- the canned verdicts --------------------------------------------------------------------------------
TEMPLATES: dict[bool, object] = {}


def canned(proxy, healthy: bool, now: datetime):
    """A steady-state check's result for ``proxy`` (no probe runs): daemon_bench's passing check
    with images and ban carried forward (the default probe schedules), or a real refused check."""
    if healthy not in TEMPLATES:
        from daemon_bench import healthy_template, refused_template

        if healthy:
            base = healthy_template(proxy)
            probes = tuple(dataclasses.replace(o, carried=True, age_s=600.0) if o.name in ("images", "ban") else o
                           for o in base.probes)
            TEMPLATES[True] = dataclasses.replace(base, probes=probes, elapsed_ms=844.0)
        else:
            TEMPLATES[False] = refused_template()
    return dataclasses.replace(TEMPLATES[healthy], proxy=proxy, started_at=now)


def is_healthy(proxy_id: int) -> bool:
    return proxy_id % 10 < HEALTHY_SHARE * 10


# -- one stub daemon (a child process) ------------------------------------------------------------------
def child_main(a: argparse.Namespace) -> None:
    """Claim on one thread, write on another (the daemon's storage threads), until ``a.until``."""
    from proxycheck import health, store
    from proxycheck.config import Settings
    from proxycheck.daemon.writer import write_results
    from proxycheck.store.exits import FollowUp

    engine = store.make_engine(a.url, writer=True, application_name=f"fleet-{a.index}")
    owner = store.register_instance(engine)
    settings = Settings()
    policy = settings.health
    follow_up = FollowUp(settings.probes.sticky_seconds, settings.probes.sticky_refresh)
    done: queue.Queue = queue.Queue()
    cap = max(1000, 10 * a.claim)
    stats = {"claims": [], "writes": [], "lag_ms": [], "claimed": 0, "written": 0, "errors": []}
    stop = threading.Event()
    cpu0 = time.process_time()

    def in_window(t: float) -> bool:
        return a.start <= t <= a.end

    def claimer() -> None:
        next_fill = time.time()
        while not stop.is_set():
            if done.qsize() >= cap:  # the writer's backpressure (writer.py rule 3)
                time.sleep(0.01)
                continue
            if a.dispatch_interval:
                time.sleep(max(0.0, next_fill - time.time()))
                next_fill = max(next_fill + a.dispatch_interval, time.time())
            t0 = time.time()
            claims = store.claim_due(engine, owner, a.claim, 180.0)
            t1 = time.time()
            if in_window(t0):
                stats["claims"].append((t1 - t0) * 1000)
                stats["claimed"] += len(claims)
                stats["lag_ms"].extend((t0 - c.due_at.timestamp()) * 1000 for c in claims)
            now = datetime.now(UTC)
            for c in claims:
                done.put((c, canned(c.proxy, is_healthy(c.proxy_id), now)))
            if not claims and not a.dispatch_interval:
                time.sleep(0.05)

    def writer() -> None:
        rng = random.Random(a.index)
        while not stop.is_set() or not done.empty():
            try:
                batch = [done.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(batch) < a.batch:
                try:
                    batch.append(done.get_nowait())
                except queue.Empty:
                    break
            now = datetime.now(UTC)
            judged = [(c, r, health.advance(c.state, healthy=bool(r.healthy), code=r.code, reason=r.reason, now=now,
                                            policy=policy, rng=rng)) for c, r in batch]
            t0 = time.time()
            write_results(engine, judged, [], [], owner, now, now, follow_up)
            t1 = time.time()
            if in_window(t0):
                stats["writes"].append((t1 - t0) * 1000)
                stats["written"] += len(batch)

    threads = [threading.Thread(target=claimer), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, a.until - time.time()))
    stop.set()
    for t in threads:
        t.join()
    stats["cpu_s"] = time.process_time() - cpu0
    stats["pool_checked_out_max"] = engine.pool.size()  # type: ignore[attr-defined]
    engine.dispose()
    print(json.dumps(stats))


# -- database set-up --------------------------------------------------------------------------------------
class OwnCluster:
    """A PostgreSQL 15 cluster of our own (``initdb`` in a temp dir, run as ``postgres``, loopback
    only, on a free port) with ``TUNED`` settings; stopped by its postmaster PID."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self) -> None:
        from proxycheck.world import free_port

        self.dir = Path(tempfile.mkdtemp(prefix="pcfleet-pg-"))
        self.port = free_port()
        os.chown(self.dir, *_postgres_ids())
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"

    def start(self) -> str:
        as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*as_pg, str(self.BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
        opts = " ".join(f"-c {k}={v}" for k, v in {**TUNED, "listen_addresses": "127.0.0.1",
                                                     "unix_socket_directories": str(self.dir)}.items())
        subprocess.run([*as_pg, str(self.BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o",
                        f"-p {self.port} {opts}", "start"], check=True, stdout=subprocess.DEVNULL)
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 15)  # smart shutdown of the postmaster we started
            for _ in range(300):
                if not pid_file.exists():
                    break
                time.sleep(0.1)
        subprocess.run(["rm", "-rf", str(self.dir)], check=False)


def _postgres_ids() -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def admin():
    import psycopg

    return psycopg.connect(PG_ADMIN, autocommit=True)


def create_db(name: str) -> str:
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_db(name: str) -> None:
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill_proxies(url: str, n: int) -> float:
    """N proxies through the real ``sync_source`` (public-looking addresses with credentials)."""
    from proxycheck import store
    from proxycheck.proxy import Proxy

    proxies = [Proxy("http", f"198.{18 + j // 64000}.{(j // 250) % 256}.{1 + j % 250}", 3128 + j % 7,
                     f"user{j:07d}", f"pw-{j * 7919 % 1000003:07d}", frozenset({"sim"}), None) for j in range(n)]
    engine = store.make_engine(url, writer=True)
    t0 = time.perf_counter()
    store.sync_source(engine, "csv:/sim/proxies.csv", proxies, datetime.now(UTC), spread=False)
    engine.dispose()
    return time.perf_counter() - t0


def psql(url: str, sql: str, *args) -> list:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


# -- what the server does ----------------------------------------------------------------------------------
class Sampler:
    """Every ``every`` s: our database's backends (state, wait event, CPU from /proc), the
    server's background processes' CPU, ungranted locks, connections per application."""

    def __init__(self, db: str, every: float = 0.05) -> None:
        self.db, self.every = db, every
        self.waits: Counter = Counter()
        self.samples = 0
        self.lock_waits: Counter = Counter()
        self.conns: Counter = Counter()
        self.conn_samples = 0
        self.backend_cpu: dict[int, tuple[float, float]] = {}
        self.bg_cpu: dict[int, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._conn = admin()
        self._me = self._conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.recording = False

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()

    def _loop(self) -> None:
        tick = 0
        while not self._stop.wait(self.every):
            if not self.recording:
                continue
            tick += 1
            rows = self._conn.execute(
                "SELECT pid, datname, backend_type, state, wait_event_type, wait_event, application_name "
                "FROM pg_stat_activity WHERE pid <> %s", (self._me,)).fetchall()
            self.samples += 1
            for pid, datname, btype, state, wtype, wevent, app in rows:
                if datname == self.db and btype == "client backend":
                    if state == "active":
                        self.waits[f"{wtype}:{wevent}" if wtype else "CPU (no wait event)"] += 1
                    if tick % 10 == 0:
                        self.conns[app] += 1
                    if tick % 4 == 0:
                        self._cpu(self.backend_cpu, pid)
                elif btype in ("walwriter", "checkpointer", "background writer", "autovacuum worker") and tick % 4 == 0:
                    self._cpu(self.bg_cpu, pid)
            if tick % 10 == 0:
                self.conn_samples += 1
            for mode, ltype in self._conn.execute(
                    "SELECT l.mode, l.locktype FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE NOT l.granted AND d.datname = %s", (self.db,)).fetchall():
                self.lock_waits[f"{ltype}/{mode}"] += 1

    @staticmethod
    def _cpu(table: dict, pid: int) -> None:
        cpu = proc_cpu(pid)
        table[pid] = (table.get(pid, (cpu, cpu))[0], cpu)

    @staticmethod
    def total(table: dict) -> float:
        return sum(last - first for first, last in table.values())

    def start(self) -> None:
        # Backends already alive: count from now (first sample); new ones: all of their CPU.
        for pid in list(self.backend_cpu):
            self._cpu(self.backend_cpu, pid)
        self.recording = True

    def stop(self) -> None:
        self.recording = False
        time.sleep(self.every * 2)
        for table in (self.backend_cpu, self.bg_cpu):
            for pid in list(table):
                self._cpu(table, pid)


def wal_stats() -> dict:
    with admin() as conn:
        row = conn.execute("SELECT wal_records, wal_fpi, wal_bytes, wal_write, wal_sync FROM pg_stat_wal").fetchone()
    return dict(zip(("records", "fpi", "bytes", "write", "sync"), (float(v) for v in row)))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- part 1: throughput --------------------------------------------------------------------------------------
def spawn_children(url: str, k: int, start: float, end: float, a: argparse.Namespace, *, dispatch: float = 0.0,
                   claim: int | None = None) -> list[subprocess.Popen]:
    procs = []
    for i in range(k):
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--url", url, "--index", str(i),
                "--start", str(start), "--end", str(end), "--until", str(end + 0.5),
                "--claim", str(claim or a.claim), "--batch", str(a.batch), "--dispatch-interval", str(dispatch)]
        env = dict(os.environ)
        if a.code:  # another checkout's store path for the children (A/B against main)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(a.code), env.get("PYTHONPATH")]))
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env))
    return procs


def collect(procs: list[subprocess.Popen]) -> list[dict]:
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a fleet child (pid {p.pid}) failed with exit code {p.returncode}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def make_overdue(url: str) -> None:
    psql(url, "UPDATE proxies SET next_check_at = now() - interval '1 hour' * random(), lease_owner = NULL, "
              "lease_token = NULL, lease_expires_at = NULL")
    psql(url, "VACUUM ANALYZE")


def throughput_step(url: str, db: str, k: int, a: argparse.Namespace) -> dict:
    make_overdue(url)
    warm = 3.0
    start = time.time() + 2.0 + warm  # children import proxycheck first (about 1-2 s)
    end = start + a.seconds
    with Sampler(db) as sampler:
        procs = spawn_children(url, k, start, end, a)
        time.sleep(max(0.0, start - time.time()))
        wal0, sampler_t0 = wal_stats(), time.perf_counter()
        sampler.start()
        time.sleep(max(0.0, end - time.time()))
        sampler.stop()
        wal1, wall = wal_stats(), time.perf_counter() - sampler_t0
        kids = collect(procs)
    written = sum(c["written"] for c in kids)
    return {
        "daemons": k, "wall": wall, "written": written, "claimed": sum(c["claimed"] for c in kids),
        "rate": written / a.seconds,
        "server_cpu": Sampler.total(sampler.backend_cpu), "bg_cpu": Sampler.total(sampler.bg_cpu),
        "client_cpu": sum(c["cpu_s"] for c in kids),
        "wal": {key: wal1[key] - wal0[key] for key in wal0},
        "waits": sampler.waits, "samples": sampler.samples, "locks": sampler.lock_waits,
        "conns": {app: n / max(1, sampler.conn_samples) for app, n in sampler.conns.items()},
        "claim_ms": [x for c in kids for x in c["claims"]], "write_ms": [x for c in kids for x in c["writes"]],
    }


def report_throughput(steps: list[dict], a: argparse.Namespace) -> None:
    print(f"\n## claims + writes on one PostgreSQL ({a.proxies:,} proxies, stub checker, claim {a.claim}, "
          f"write batch {a.batch}, {a.seconds:.0f} s per step)\n")
    print("| daemons | checks written/s | DB backends CPU ms/check | DB cores at 3,334/s | WAL bytes/check "
          "| WAL full pages/check | client CPU ms/check | claim p50/p99 ms | write batch p50/p99 ms | "
          "connections per daemon |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in steps:
        n = max(1, s["written"])
        ms = s["server_cpu"] * 1000 / n
        conns = "/".join(f"{v:.1f}" for _, v in sorted(s["conns"].items()))
        print(f"| {s['daemons']} | {s['rate']:,.0f} | {ms:.3f} | {ms * 3.334:.2f} | {s['wal']['bytes'] / n:,.0f} "
              f"| {s['wal']['fpi'] / n:.2f} | {s['client_cpu'] * 1000 / n:.2f} "
              f"| {pct(s['claim_ms'], .5):.0f} / {pct(s['claim_ms'], .99):.0f} "
              f"| {pct(s['write_ms'], .5):.0f} / {pct(s['write_ms'], .99):.0f} | {conns} |")
    print("\nWhat active backends were doing (share of samples of active backends, every 50 ms):\n")
    for s in steps:
        total = sum(s["waits"].values()) or 1
        top = ", ".join(f"{w} {100 * c / total:.0f} %" for w, c in s["waits"].most_common(6))
        locks = ", ".join(f"{w} {c}" for w, c in s["locks"].most_common(4)) or "none"
        per_sample = total / max(1, s["samples"])
        print(f"- {s['daemons']} daemon(s): {per_sample:.2f} backends active on average; {top}. "
              f"Ungranted locks seen: {locks}. WAL {s['wal']['bytes'] / s['wall'] / 1e6:.1f} MB/s, "
              f"{s['wal']['sync'] / s['wall']:.0f} WAL syncs/s; server background processes {s['bg_cpu']:.1f} CPU s.")


# -- part 2: retention while dispatching ---------------------------------------------------------------------
def fill_history(url: str, hours: float, step: float = 300.0) -> int:
    """``hours`` of history per proxy, one row per ``step`` s, ending now: the rows the real write
    path stores (same JSON), generated in the server."""
    from proxycheck.proxy import Proxy
    from proxycheck.store.leases import history_values

    p = Proxy("http", "198.18.0.1", 3128, None, None, frozenset(), None)
    now = datetime.now(UTC)
    good = history_values(0, canned(p, True, now), "0" * 32)
    bad = history_values(0, canned(p, False, now), "0" * 32)
    per = int(hours * 3600 // step)
    psql(url, f"""
        INSERT INTO checks (proxy_id, checked_at, healthy, code, reason, probe, detail, elapsed_ms, exit_ip,
                            anonymity, probes, instance_id)
        SELECT p.id, now() - (g * {step} + (mod(p.id, {int(step)}))) * interval '1 second',
               (mod(p.id, 10) < {int(HEALTHY_SHARE * 10)}),
               CASE WHEN mod(p.id, 10) < {int(HEALTHY_SHARE * 10)} THEN NULL ELSE 25 END,
               CASE WHEN mod(p.id, 10) < {int(HEALTHY_SHARE * 10)} THEN NULL ELSE 'connect_refused' END,
               CASE WHEN mod(p.id, 10) < {int(HEALTHY_SHARE * 10)} THEN NULL ELSE 'tcp_connect' END,
               CASE WHEN mod(p.id, 10) < {int(HEALTHY_SHARE * 10)} THEN NULL ELSE %s END,
               844.0, CASE WHEN mod(p.id, 10) < {int(HEALTHY_SHARE * 10)} THEN '203.0.113.77' END,
               CASE WHEN mod(p.id, 10) < {int(HEALTHY_SHARE * 10)} THEN 'elite' END,
               CASE WHEN mod(p.id, 10) < {int(HEALTHY_SHARE * 10)} THEN %s::jsonb ELSE %s::jsonb END,
               repeat('0', 32)
        FROM proxies p CROSS JOIN generate_series(1, {per}) g
    """, bad["detail"], json.dumps(good["probes"]), json.dumps(bad["probes"]))
    psql(url, "VACUUM ANALYZE")
    return psql(url, "SELECT count(*) FROM checks")[0][0]


def schedule(url: str, rate: float, start: float) -> None:
    """Due times spread evenly from ``start`` (epoch seconds) on, ``rate`` proxies per second."""
    psql(url, f"UPDATE proxies SET next_check_at = to_timestamp({start}) + "
              f"(id - 1) * interval '1 second' / {rate}, lease_owner = NULL, lease_token = NULL, "
              f"lease_expires_at = NULL")
    psql(url, "VACUUM ANALYZE")


def retention_runner(url: str, result: dict, stop: threading.Event) -> None:
    from proxycheck import store

    engine = store.make_engine(url, writer=True, application_name="fleet-retention")
    passes = []
    while not stop.is_set():
        t0, c0 = time.perf_counter(), time.process_time()
        deleted = store.apply_retention(engine, datetime.now(UTC))
        passes.append((time.perf_counter() - t0, time.process_time() - c0, deleted))
    result["passes"] = passes
    engine.dispose()


def retention_part(url: str, db: str, a: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    rows = fill_history(url, a.history_hours)
    print(f"history: {rows:,} rows ({a.history_hours:g} h per proxy) in {time.perf_counter() - t0:.0f} s; "
          f"checks table {psql(url, 'SELECT pg_total_relation_size(%s)', 'checks')[0][0] / 1e9:.2f} GB", flush=True)
    phases = []
    for phase in ("quiet", "retention"):
        start = time.time() + 30.0  # after the UPDATE and VACUUM below and the children's start-up
        schedule(url, a.rate, start)
        if time.time() > start - 5:
            raise SystemExit("scheduling took longer than 25 s: the window would start with a backlog")
        end = start + a.seconds
        stop, ret = threading.Event(), {}
        with Sampler(db) as sampler:
            procs = spawn_children(url, a.daemons, start, end, a, dispatch=a.dispatch_interval, claim=a.claim)
            time.sleep(max(0.0, start - time.time()))
            wal0 = wal_stats()
            runner = None
            if phase == "retention":
                runner = threading.Thread(target=retention_runner, args=(url, ret, stop))
                runner.start()
            sampler.start()
            time.sleep(max(0.0, end - time.time()))
            sampler.stop()
            stop.set()
            wal1 = wal_stats()
            kids = collect(procs)
            if runner:
                runner.join()
        phases.append({"phase": phase, "kids": kids, "wal": {k: wal1[k] - wal0[k] for k in wal0}, "ret": ret,
                       "locks": sampler.lock_waits, "waits": sampler.waits})
    print(f"\n## dispatch lag while retention runs ({a.proxies:,} proxies due at {a.rate:g}/s, {a.daemons} daemons, "
          f"dispatch every {a.dispatch_interval:g} s, {a.seconds:.0f} s per phase)\n")
    print("| phase | claimed/s | lag p50 / p99 / max ms | claim call p50 / p99 / max ms | write batch p99 ms | WAL MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for ph in phases:
        lag = [x for c in ph["kids"] for x in c["lag_ms"]]
        cl = [x for c in ph["kids"] for x in c["claims"]]
        wr = [x for c in ph["kids"] for x in c["writes"]]
        print(f"| {ph['phase']} | {len(lag) / a.seconds:,.0f} | {pct(lag, .5):.0f} / {pct(lag, .99):.0f} / "
              f"{max(lag, default=0):.0f} | {pct(cl, .5):.1f} / {pct(cl, .99):.1f} / {max(cl, default=0):.0f} | "
              f"{pct(wr, .99):.0f} | {ph['wal']['bytes'] / 1e6:.0f} |")
    for ph in phases:
        locks = ", ".join(f"{w} {c}" for w, c in ph["locks"].most_common(4)) or "none"
        print(f"- {ph['phase']}: ungranted locks seen {locks}; waits {dict(ph['waits'].most_common(5))}")
    for wall, cpu, deleted in phases[1]["ret"].get("passes", []):
        print(f"- retention pass: {wall:.1f} s wall, {cpu:.1f} s client CPU, {deleted:,} rows deleted")


# -- part 3: retention on SQLite: how long each batch holds the writer lock -------------------------------------
def sqlite_retention(a: argparse.Namespace) -> None:
    """SQLite has one writer: while a retention batch's transaction is open (``BEGIN IMMEDIATE``
    to commit), a claim waits. Each transaction's span is timed with the engine's events."""
    from sqlalchemy import event, text

    from proxycheck import store
    from proxycheck.proxy import Proxy
    from proxycheck.store.leases import history_values

    workdir = Path(tempfile.mkdtemp(prefix="pcfleet-sqlite-"))
    url = f"sqlite:///{workdir / 'proxycheck.db'}"
    store.upgrade(url)
    engine = store.make_engine(url, writer=True)
    proxies = [Proxy("http", f"198.{18 + j // 64000}.{(j // 250) % 256}.{1 + j % 250}", 3128, f"u{j}", "pw",
                     frozenset(), None) for j in range(a.proxies)]
    store.sync_source(engine, "csv:/sim/proxies.csv", proxies, datetime.now(UTC), spread=False)
    now = datetime.now(UTC)
    p = Proxy("http", "198.18.0.1", 3128, None, None, frozenset(), None)
    good, bad = (history_values(0, canned(p, ok, now), "0" * 32) for ok in (True, False))
    per = int(a.history_hours * 3600 // 300)
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM proxies"))]
        for pid in ids:
            row = good if is_healthy(pid) else bad
            conn.execute(text(
                "INSERT INTO checks (proxy_id, checked_at, healthy, code, reason, probe, detail, elapsed_ms, exit_ip, "
                "anonymity, probes, instance_id) "
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :per) "
                "SELECT :pid, datetime(:now, '-' || (n * 300 + :pid % 300) || ' seconds'), :healthy, :code, :reason, "
                ":probe, :detail, 844.0, :exit_ip, :anonymity, :probes, :inst FROM g"),
                {**row, "pid": pid, "per": per, "now": now.strftime("%Y-%m-%d %H:%M:%S.%f"),
                 "probes": json.dumps(row["probes"]), "inst": "0" * 32})
    spans: list[float] = []
    opened: list[float] = []
    event.listen(engine, "begin", lambda conn: opened.append(time.perf_counter()))
    event.listen(engine, "commit", lambda conn: spans.append((time.perf_counter() - opened.pop()) * 1000))
    # The dispatcher meanwhile: a claim of 50 every 0.1 s on its own engine (its own connection).
    claimer_engine = store.make_engine(url, writer=True)
    owner = store.register_instance(claimer_engine)
    waits: list[float] = []
    stop = threading.Event()

    def claimer() -> None:
        while not stop.wait(0.1):
            c0 = time.perf_counter()
            store.claim_due(claimer_engine, owner, 50, 600.0)
            waits.append((time.perf_counter() - c0) * 1000)

    def quiet_claims(seconds: float) -> list[float]:
        waits.clear()
        thread = threading.Thread(target=claimer)
        stop.clear()
        thread.start()
        time.sleep(seconds)
        stop.set()
        thread.join()
        return list(waits)

    quiet = quiet_claims(5.0)
    thread = threading.Thread(target=claimer)
    waits.clear()
    stop.clear()
    thread.start()
    t0, c0 = time.perf_counter(), time.process_time()
    deleted = store.apply_retention(engine, datetime.now(UTC))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stop.set()
    thread.join()
    during = list(waits)
    claimer_engine.dispose()
    engine.dispose()
    size = (workdir / "proxycheck.db").stat().st_size
    subprocess.run(["rm", "-rf", str(workdir)], check=False)
    print(f"\n## retention on SQLite ({a.proxies:,} proxies, {a.history_hours:g} h of history each, "
          f"{size / 1e9:.2f} GB file)\n")
    print(f"one pass: {deleted:,} rows deleted in {wall:.1f} s ({cpu:.1f} s CPU of this process, which also "
          f"claims), {len(spans):,} transactions; the writer lock held per transaction p50 {pct(spans, .5):.1f} ms, "
          f"p99 {pct(spans, .99):.1f} ms, max {max(spans, default=0):.1f} ms\n")
    print("| claim_due (50 proxies, every 0.1 s) | calls | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for name, w in (("quiet, 5 s", quiet), ("while retention runs", during)):
        print(f"| {name} | {len(w)} | {pct(w, .5):.1f} | {pct(w, .99):.1f} | {max(w, default=0):.1f} |")


# -- main -----------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("throughput", "retention", "sqlite-retention"), default="throughput")
    ap.add_argument("--proxies", type=int, default=1_000_000)
    ap.add_argument("--daemons", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per step")
    ap.add_argument("--claim", type=int, default=250, help="proxies per claim_due call (the dispatcher's free slots)")
    ap.add_argument("--batch", type=int, default=500, help="results per write (daemon/writer.py BATCH)")
    ap.add_argument("--rate", type=float, default=1000.0, help="retention part: proxies due per second")
    ap.add_argument("--dispatch-interval", type=float, default=0.1, help="retention part: seconds between claims")
    ap.add_argument("--history-hours", type=float, default=7.0, help="retention part: history per proxy")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--server", choices=("shared", "tuned"), default="shared",
                    help="shared: the server at 127.0.0.1:5432 as configured; tuned: a cluster of our own with TUNED")
    ap.add_argument("--code", type=Path, help="run the stub daemons on another checkout's proxycheck (A/B)")
    # child mode (internal)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--end", type=float, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--until", type=float, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        a.url = a.url
        child_main(a)
        return

    from proxycheck import store

    if a.part == "sqlite-retention":
        sqlite_retention(a)
        return
    global PG_ADMIN
    cluster = OwnCluster() if a.server == "tuned" else None
    if cluster:
        PG_ADMIN = cluster.start()
    settings = psql(PG_ADMIN, "SELECT name, setting, unit FROM pg_settings WHERE name IN "
                              "('max_wal_size', 'checkpoint_timeout', 'wal_compression', 'autovacuum', "
                              "'shared_buffers', 'synchronous_commit')")
    print("server: " + ", ".join(f"{n}={int(v) * 8 // 1024} MB" if u == "8kB" else f"{n}={v}{u or ''}"
                                 for n, v, u in settings), flush=True)
    db = f"pcfleet_{os.getpid()}"
    url = create_db(db)
    try:
        store.upgrade(url)
        print(f"{a.proxies:,} proxies synced in {fill_proxies(url, a.proxies):.0f} s", flush=True)
        if a.part == "throughput":
            steps = []
            for k in a.daemons:
                steps.append(throughput_step(url, db, k, a))
                print(f"  {k} daemon(s): {steps[-1]['rate']:,.0f} checks/s", flush=True)
            report_throughput(steps, a)
        else:
            a.daemons = a.daemons[0]
            retention_part(url, db, a)
    finally:
        if not a.keep or cluster:
            drop_db(db)
        else:
            print(f"kept: {url}")
        if cluster:
            cluster.stop()


if __name__ == "__main__":
    main()
