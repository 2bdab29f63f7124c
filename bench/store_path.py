"""Benchmark: the daemon's storage path alone, in one process: CPU per check of the claim and of
the write-back, at N proxies in steady state, on SQLite or PostgreSQL.

    .venv/bin/python bench/store_path.py --proxies 100000
    .venv/bin/python bench/store_path.py --proxies 100000 --database postgresql
    PYTHONPATH=/tmp/pc-main .venv/bin/python bench/store_path.py ...   # another checkout's store (A/B)

What it does: a throwaway database (a SQLite file in a temporary directory, or a PostgreSQL
database ``pcstore_<pid>`` on 127.0.0.1, dropped at the end) migrated by the code under test,
with N healthy proxies, each with its six probes' last results and its exit IP history (20
readings, what the store keeps), every proxy overdue. Then ``--rounds`` rounds of what the
daemon's storage threads do for 60 checks: two ``store.claim_due`` of 30 (the dispatcher's call)
and one ``write_results`` of the 60 (the writer's, daemon/writer.py: fenced state, exit
readings, probe results, history), with a canned steady-state verdict per check (tcp_connect,
anonymity, ssl and long_get ran; images and ban carried forward). Printed: the claim's and the
write's CPU per check (``time.thread_time()`` around each call, after three warm-up rounds),
and on PostgreSQL the write's WAL bytes per check and the server backends' CPU per check. No
network, no event loop, no other thread: the figure ``daemon_bench.py --live`` includes in its
total, alone and repeatable to a few percent. ``--profile`` prints cProfile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import column, create_engine, insert, inspect, table, text, update

import proxycheck
from proxycheck import health, store
from proxycheck.daemon.writer import write_results
from proxycheck.proxy import Proxy
from proxycheck.result import CheckResult, ProbeOutcome
from proxycheck.store import exits
from proxycheck.store.models import ProbeResultRow, ProxyRow, UTCDateTime
from proxycheck.store.probe_results import outcome_doc

EXIT_IP = "127.42.0.250"
READINGS = 20
CLAIM, CLAIMS = 30, 2  # per round: two claims of 30, one write of 60
WARMUP = 3


def outcomes() -> tuple[ProbeOutcome, ...]:
    return (
        ProbeOutcome("tcp_connect", True, elapsed_ms=0.4, facts={"connect_ms": 0.3, "resolved_ip": "127.200.0.1"},
                     phases={"connect": 0.3}),
        ProbeOutcome("anonymity", True, detail="anonymous", elapsed_ms=1.5,
                     facts={"exit_ip": EXIT_IP, "anonymity": "anonymous", "latency_ms": 1.2},
                     phases={"ttfb": 1.0, "transfer": 0.1}),
        ProbeOutcome("ssl", True, elapsed_ms=3.0, facts={"tls_version": "TLSv1.3"},
                     phases={"proxy_handshake": 0.5, "tls": 1.5, "ttfb": 0.5}),
        ProbeOutcome("long_get", True, elapsed_ms=1.0, facts={"bytes": 2048}, phases={"ttfb": 0.8}),
        ProbeOutcome("images", True, carried=True, age_s=100.0, elapsed_ms=2.0),
        ProbeOutcome("ban", True, carried=True, age_s=500.0, elapsed_ms=5.0,
                     facts={"targets": {"recaptcha": {"banned": False}}}),
    )


def seed(url: str, n: int, now: datetime) -> None:
    store.upgrade(url)
    engine = store.make_engine(url, writer=True)
    try:
        store.add_proxies(engine, [Proxy("http", f"127.200.{j // 250}.{j % 250 + 1}", 24000 + j % 8) for j in range(n)])
        with engine.begin() as conn:
            ids = [r[0] for r in conn.execute(ProxyRow.__table__.select().with_only_columns(ProxyRow.id))]
        docs = {o.name: outcome_doc(o) for o in outcomes()}
        rng = random.Random(21)
        results = [{"proxy_id": pid, "probe": name, "passed": True, "outcome": doc,
                    "ran_at": now - timedelta(seconds=rng.uniform(0, 300))} for pid in ids for name, doc in docs.items()]
        seen = [(pid, [(now - timedelta(seconds=300 * k + 1), EXIT_IP) for k in range(READINGS - 1, -1, -1)]) for pid in ids]
        with engine.begin() as conn:
            for k in range(0, len(results), 20_000):
                conn.execute(insert(ProbeResultRow), results[k:k + 20_000])
            if inspect(conn).has_table("exit_histories"):
                from proxycheck.store.models import ExitHistoryRow
                for k in range(0, len(seen), 5_000):
                    conn.execute(insert(ExitHistoryRow),
                                 [{"proxy_id": pid, "readings": exits.encode(kept)} for pid, kept in seen[k:k + 5_000]])
            else:  # a store before migration 0010 (an A/B across it): a row per reading
                old = table("exit_readings", column("proxy_id"), column("seen_at", UTCDateTime()), column("ip"))
                flat = [{"proxy_id": pid, "seen_at": at, "ip": ip} for pid, kept in seen for at, ip in kept]
                for k in range(0, len(flat), 20_000):
                    conn.execute(insert(old), flat[k:k + 20_000])
            conn.execute(update(ProxyRow).values(
                state="healthy", consecutive_successes=10, next_check_at=now - timedelta(days=1), exit_ip=EXIT_IP,
                anonymity="anonymous", latency_ms=1.2, last_checked_at=now - timedelta(seconds=300)))
    finally:
        engine.dispose()


class Server:
    """The PostgreSQL backends' CPU for our database, and the WAL position."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def cpu(self) -> float:
        with self.engine.connect() as conn:
            pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars().all()
        ticks = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def wal(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")).scalar())


def measure(url: str, rounds: int, now: datetime, profile: bool) -> None:
    engine = store.make_engine(url, writer=True)
    server = Server(engine) if url.startswith("postgresql") else None
    policy, rng = health.HealthPolicy(), random.Random(1)
    prof = cProfile.Profile() if profile else None
    claim_s = write_s = 0.0
    checks = wal = 0
    server_from = 0.0
    clock = now
    try:
        for r in range(WARMUP + rounds):
            clock += timedelta(seconds=0.2)
            measured = r >= WARMUP
            if measured and server is not None and r == WARMUP:
                server_from = server.cpu()
            if prof is not None and measured:
                prof.enable()
            t0 = time.thread_time()
            claims = [c for _ in range(CLAIMS) for c in store.claim_due(engine, "bench", CLAIM, 60, now=clock)]
            t1 = time.thread_time()
            judged = []
            for c in claims:
                result = CheckResult(c.proxy, True, None, None, "", None, outcomes(), clock, 8.0, exit_ip=EXIT_IP,
                                     anonymity="anonymous", latency_ms=1.2,
                                     targets={"recaptcha": {"banned": False, "detail": ""}})
                judged.append((c, result, health.advance(c.state, healthy=True, code=None, reason=None, now=clock,
                                                         policy=policy, rng=rng)))
            wal_from = server.wal() if server is not None and measured else 0
            t2 = time.thread_time()
            write_results(engine, judged, [], [], "bench", clock, clock, exits.FollowUp())
            t3 = time.thread_time()
            if prof is not None and measured:
                prof.disable()
            if measured:
                claim_s += t1 - t0
                write_s += t3 - t2
                checks += len(claims)
                if server is not None:
                    wal += server.wal() - wal_from
        if not checks:
            raise SystemExit("no proxy was claimed: --proxies must exceed 60 x (rounds + 3)")
        line = (f"{checks} checks: claim {1000 * claim_s / checks:.3f} ms/check, write {1000 * write_s / checks:.3f} "
                f"ms/check, together {1000 * (claim_s + write_s) / checks:.3f} ms/check (client CPU)")
        if server is not None:
            line += (f"; server {1000 * (server.cpu() - server_from) / checks:.3f} ms/check, "
                     f"WAL of the writes {wal / checks:,.0f} B/check")
        print(line)
        if prof is not None:
            pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxies", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=100, help="measured rounds of 60 checks (after 3 warm-up rounds)")
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="a PostgreSQL URL allowed to create and drop databases")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.proxies < 60 * (args.rounds + WARMUP):
        ap.error(f"--proxies must be at least 60 x (--rounds + {WARMUP}): every check claims a proxy not checked yet")
    print(f"store_path: N={args.proxies:,} {args.database}, {args.rounds} rounds of {CLAIMS} claims of {CLAIM} + one "
          f"write; code {Path(proxycheck.__file__).parent}", flush=True)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="proxycheck-store-path-") as tmp:
        if args.database == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            seed(url, args.proxies, now)
            measure(url, args.rounds, now, args.profile)
            return
        name = f"pcstore_{os.getpid()}"
        admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        try:
            url = admin.url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
            seed(url, args.proxies, now)
            measure(url, args.rounds, now, args.profile)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()


if __name__ == "__main__":
    main()
