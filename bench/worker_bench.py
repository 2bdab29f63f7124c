"""Benchmark: ``get_healthy_proxy()`` against 100,000 proxies, with the daemon writing meanwhile.

    python bench/worker_bench.py                       # SQLite and PostgreSQL, 1 and 8 processes
    python bench/worker_bench.py --db sqlite --procs 1 --strategies random --seconds 5
    python bench/worker_bench.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Builds a fresh database of ``--proxies`` rows (90 % healthy and fresh, 10 % unhealthy), then for
each (database, strategy, process count) forks N worker processes that call
``proxycheck.get_healthy_proxy(strategy=...)`` in a loop for ``--seconds`` and time every call.
Meanwhile a *daemon* process writes as the real one would at this fleet size (``--check-rate``
passing checks per second, in batches of 50, each batch one transaction with history rows) and
marks one *canary* proxy unhealthy every 0.25 s (32 proxies, spread over the ids, are tagged
``canary``).
Every 20th call of each worker is an untimed ``get_healthy_proxy(strategy=..., tags="canary")``,
so each canary is handed out several times a second: a hand-out of a marked canary later than
its mark's commit is *late* (the target: none later than 1 s; the design: none at all), and the
hand-outs before the mark show the check is not vacuous. Runs share their database, so each
starts by restoring the canaries and zeroing use counts (``reset``). bench/README.md says how
to read it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, insert, make_url, select, text, update

from proxycheck.store import make_engine, migrate
from proxycheck.store._rows import utcnow
from proxycheck.store.models import CheckRow, ProxyRow

FORK = multiprocessing.get_context("fork")
MARK_EVERY = 0.25
BATCH = 50
CANARY_EVERY = 20  # every N-th worker call asks for a canary (untimed)


CANARIES = 32


def is_canary(proxy_id: int, n: int) -> bool:
    return proxy_id % max(n // CANARIES, 1) == 5 % max(n // CANARIES, 1)


def build(url: str, n: int) -> None:
    migrate.upgrade(url)
    engine = make_engine(url, writer=True)
    now = utcnow()
    rows = [
        {
            "key": f"http://u@10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:8080",
            "scheme": "http",
            "host": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            "port": 8080,
            "username": "u",
            "password": "p",
            "tags": ["canary"] if is_canary(i + 1, n) else ["us"] if i % 3 else ["de"],
            "label": None,
            "source": "bench",
            "enabled": True,
            "created_at": now,
            "updated_at": now,
            "state": "healthy" if i % 10 else "unhealthy",
            "code": None if i % 10 else 26,
            "last_success_at": now,
            "last_checked_at": now,
            "next_check_at": now + timedelta(seconds=300),
            "latency_ms": float(50 + i % 950),
            "exit_ip": "198.51.100.1",
            "anonymity": "elite",
        }
        for i in range(n)
    ]
    with engine.begin() as conn:
        for start in range(0, n, 5000):
            conn.execute(insert(ProxyRow), rows[start : start + 5000])
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE proxies"))
    engine.dispose()


def reset(url: str, n: int) -> None:
    """Undo the previous run on this database before the next one: its daemon left canaries
    marked unhealthy (and the next run with the same process count draws the same marks, so
    they would be handed out never, before or after: ``before`` would be a vacuous 0), and its
    counted picks left use counts behind. Every run starts from the fleet ``build`` made."""
    engine = make_engine(url, writer=True)
    now = utcnow()
    canaries = [i for i in range(1, n + 1) if is_canary(i, n) and i % 10 != 1]
    with engine.begin() as conn:
        conn.execute(
            update(ProxyRow)
            .where(ProxyRow.id.in_(canaries))
            .values(state="healthy", code=None, reason=None, state_changed_at=now, last_success_at=now, last_checked_at=now)
        )
        conn.execute(
            update(ProxyRow)
            .where((ProxyRow.use_count != 0) | ProxyRow.last_used_at.is_not(None))
            .values(use_count=0, last_used_at=None)
        )
        unhealthy = conn.execute(
            select(ProxyRow.id).where(ProxyRow.id.in_(canaries), ProxyRow.state != "healthy")
        ).scalars().all()
    engine.dispose()
    assert not unhealthy, f"canaries still unhealthy after reset: {unhealthy}"


def daemon(url: str, n: int, rate: float, marks: list[int], started: Any, out: Any) -> None:
    """Writes like the daemon: passing checks at ``rate``/s, and marks ``marks`` one by one."""
    engine = make_engine(url, writer=True)
    rng = random.Random(7)
    marked: dict[int, float] = {}
    started.wait()
    t0 = time.monotonic()
    next_mark, written = t0 + MARK_EVERY, 0
    pending = list(marks)
    while not out_of_time(started):
        now = utcnow()
        if rate > 0 and written < (time.monotonic() - t0) * rate:
            ids = [rng.randrange(1, n + 1) for _ in range(BATCH)]
            with engine.begin() as conn:
                conn.execute(
                    update(ProxyRow).where(ProxyRow.id.in_(ids)).values(last_checked_at=now, last_success_at=now)
                )
                conn.execute(
                    insert(CheckRow),
                    [{"proxy_id": i, "checked_at": now, "healthy": True, "probes": [], "elapsed_ms": 200.0} for i in ids],
                )
            written += BATCH
        if pending and time.monotonic() >= next_mark:
            proxy_id = pending.pop(0)
            with engine.begin() as conn:
                conn.execute(
                    update(ProxyRow)
                    .where(ProxyRow.id == proxy_id)
                    .values(state="unhealthy", code=49, reason="auth_rejected", state_changed_at=now)
                )
            marked[proxy_id] = time.time()  # after the commit
            next_mark += MARK_EVERY
        time.sleep(0.002)
    engine.dispose()
    out.put(("daemon", marked, written))


def out_of_time(started: Any) -> bool:
    return time.time() >= started.deadline.value


def worker(url: str, strategy: str, marks: set[int], started: Any, out: Any) -> None:
    import proxycheck
    from proxycheck.worker import default_pool

    proxycheck.configure(url)
    proxycheck.get_healthy_proxy(strategy=strategy)  # warm: engine, schema check, snapshot
    key_to_id: dict[str, int] = {}
    pool = default_pool()
    with pool._open().connect() as conn:  # keys of the proxies the daemon will mark
        for i, key in conn.execute(text("SELECT id, key FROM proxies WHERE id IN (%s)" % ",".join(map(str, marks)))):
            key_to_id[key] = i
    started.wait()
    latencies: list[int] = []
    seen: list[tuple[int, float]] = []  # hand-outs of proxies the daemon marks, with the time
    clock = time.perf_counter_ns
    get = proxycheck.get_healthy_proxy
    calls = 0
    while not out_of_time(started):
        calls += 1
        if calls % CANARY_EVERY == 0:
            hit = key_to_id.get(get(strategy=strategy, tags="canary").key)
            if hit is not None:
                seen.append((hit, time.time()))
            continue
        t = clock()
        get(strategy=strategy)
        latencies.append(clock() - t)
    snap = pool._snapshot
    out.put(("worker", latencies, seen, snap.load_seconds if snap else None))


class Start:
    """A barrier plus a shared deadline, set when everyone is ready."""

    def __init__(self, parties: int) -> None:
        self.barrier = FORK.Barrier(parties)
        self.deadline = FORK.Value("d", 0.0)

    def wait(self) -> None:
        self.barrier.wait()


def run(url: str, n: int, strategy: str, procs: int, seconds: float, rate: float) -> dict[str, Any]:
    reset(url, n)
    rng = random.Random(procs)
    canaries = [i for i in range(1, n + 1) if is_canary(i, n) and i % 10 != 1]  # healthy ones
    marks = rng.sample(canaries, min(int(seconds / MARK_EVERY) + 1, len(canaries) // 2))
    start = Start(procs + 2)  # workers, daemon, us
    out = FORK.Queue()
    children = [FORK.Process(target=worker, args=(url, strategy, set(marks), start, out)) for _ in range(procs)]
    children.append(FORK.Process(target=daemon, args=(url, n, rate, marks, start, out)))
    for c in children:
        c.start()
    start.deadline.value = time.time() + 3600  # until everyone is ready
    start.barrier.wait()
    start.deadline.value = time.time() + seconds
    results = [out.get(timeout=seconds + 300) for _ in children]
    for c in children:
        c.join(timeout=60)
    (_, marked, written), *_ = [r for r in results if r[0] == "daemon"]
    workers = [r for r in results if r[0] == "worker"]
    lat = sorted(x for _, latencies, _, _ in workers for x in latencies)
    seen = [(i, t) for _, _, hits, _ in workers for i, t in hits if i in marked]
    delays = [t - marked[i] for i, t in seen if t > marked[i]]
    before = len(seen) - len(delays)
    loads = [s for *_, s in workers if s is not None]
    return {
        "calls": len(lat),
        "per_s": len(lat) / seconds,
        "p50": lat[len(lat) // 2] / 1e6,
        "p99": lat[int(len(lat) * 0.99)] / 1e6,
        "max": lat[-1] / 1e6,
        "marked": len(marked),
        "before": before,
        "late": len(delays),
        "late_max": max(delays, default=0.0),
        "writes_per_s": written / seconds,
        "snapshot_s": statistics.median(loads) if loads else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--proxies", type=int, default=100_000)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--strategies", nargs="+", default=["random", "least_used"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--check-rate", type=float, default=None, help="daemon checks/s (default: proxies / 300)")
    parser.add_argument("--pg-url", default=os.environ.get("PROXYCHECK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    rate = args.proxies / 300 if args.check_rate is None else args.check_rate
    print(f"# {args.proxies} proxies (90 % healthy), daemon writing {rate:.0f} checks/s, {os.cpu_count()} CPUs, {args.seconds:g} s per run")
    print(f"{'db':<11}{'strategy':<12}{'procs':>5}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'snapshot s':>11}{'marked':>7}{'before':>7}{'late':>5}{'late max s':>11}")
    for db in args.db:
        with database(db, args.pg_url) as url:
            build(url, args.proxies)
            for strategy in args.strategies:
                for procs in args.procs:
                    r = run(url, args.proxies, strategy, procs, args.seconds, rate)
                    snap = f"{r['snapshot_s']:.3f}" if r["snapshot_s"] is not None and strategy in ("random", "fastest") else "-"
                    print(f"{db:<11}{strategy:<12}{procs:>5}{r['per_s']:>10.0f}{r['p50']:>9.3f}{r['p99']:>9.3f}{r['max']:>9.1f}"
                          f"{snap:>11}{r['marked']:>7}{r['before']:>7}{r['late']:>5}{r['late_max']:>11.3f}", flush=True)


class database:
    """A throwaway database: a SQLite file in a temporary directory, or a new PostgreSQL database."""

    def __init__(self, kind: str, pg_url: str) -> None:
        self.kind, self.pg_url = kind, pg_url

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            self.tmp = tempfile.TemporaryDirectory(prefix="worker-bench-")
            return f"sqlite:///{self.tmp.name}/proxycheck.db"
        self.name = f"proxycheck_bench_{os.getpid()}"
        self.admin = create_engine(make_url(self.pg_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}"'))
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        return make_url(self.pg_url).set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        if self.kind == "sqlite":
            self.tmp.cleanup()
            return
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
