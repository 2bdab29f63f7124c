"""``daemon_bench.py --live``: the long-lived daemon's sustained checks/s and CPU per check against
live proxies, for one or several N, on SQLite or PostgreSQL.

    unshare --net sh -c 'ip link set lo up && .venv/bin/python bench/daemon_bench.py --live --proxies 1000 10000 100000'
    unshare --net sh -c 'ip link set lo up && .venv/bin/python bench/daemon_bench.py --live --database postgresql --proxies 1000 10000 100000'

What is measured, exactly:

1. **Proxies.** N distinct proxy rows, proxy j at ``http://<address(j)>:<port + j mod S>``: every
   row has its own destination address (127.200.0.1, 127.200.0.2, ...), so the daemon's key
   (scheme, host, port) and every client->proxy 4-tuple are distinct. They are served by S squid
   processes (``--squids``) that listen on the wildcard address, squid K on ``port + K``: on
   Linux a wildcard listener accepts a connection to any 127.x.y.z. That is why the bench runs in
   a network namespace of its own (``unshare --net``, checked below): there the wildcard means
   loopback only, and no port of another job on the box can collide. PostgreSQL is reached there
   through its Unix socket. Each squid leaves from 127.42.K.250 and is configured as in
   ``world.py`` (check_bench's farm); the judge is ``world.py``'s. So every check is the suite
   through a real squid to a real judge, and S processes stand for N proxies.
2. **"One core busy".** On a 2-CPU box the daemon is pinned to the last CPU and the world (judge
   and squids) to the others. Nothing stops other jobs on the box from running on either core; the
   CPUs' utilisation over the window is printed (/proc/stat), and so is the load average.
3. **The schedule asked for**: ``--rate`` checks/s (default 333: 100,000 proxies every 300 s), as
   ``[health].interval = max(1, N / rate)``; ``[check].concurrency`` is ``--concurrency``.
4. **Steady state, seeded** (``seed_steady_state``): before the daemon starts, every proxy is
   healthy and due once in ``[margin, margin + interval)`` s, and each probe's last result (one
   real check of proxy 0, copied) is aged uniformly over ``max(every, interval)``, so from its
   first claim the daemon runs the costly probes as often as their default schedules make it
   (images every 900 s, ban every 1800 s: at a 300 s interval about 4.5 probes a check). A fresh
   fleet would run every probe on its first round, which at N = 100,000 lasts longer than any window.
   Each proxy also has its exit IP history (``--exit-history``, default the 20 readings the store
   keeps, one per past visit): every check reads it back to judge sticky exits (store/exits.py), and
   a daemon that has run for 20 intervals has it all (issue 21's fifth pass; before it the seed had
   none, which the earlier passes' figures did not pay for).
5. **The daemon** is the installed CLI, ``proxycheck run`` (``--code DIR`` puts another checkout
   first on its ``PYTHONPATH``, for a before/after on the same box), with ``[http]`` on. After
   READY and ``--warmup`` s (counted from the first seeded due time too), a window of
   ``--live-seconds``: checks stored (``checks.id`` advances, read every ``--sample`` s), the
   daemon's CPU (user and sys of its process, all threads) from /proc, its RSS; on PostgreSQL the
   server backends' CPU for its database. Then SIGTERM; peak RSS from ``wait4``.
6. Figures: checks/s asked and done, CPU ms per stored check (daemon CPU / checks stored in the
   window), the daemon's share of its core, dispatch lag p50/p99 (``proxycheck_claim_delay_seconds``
   from /metrics before and after the window: claimed minus due, per claim; quantiles interpolated
   within buckets as Prometheus does; the scrapes are outside the CPU window), probes run per
   check, codes of the window's checks, peak RSS, and how fast the daemon's core was before and
   after the run (``reference_ms``: a fixed Python loop pinned to it; on a shared host CPU time per
   check rises with it, so compare figures only where it is alike), and the world's CPU per check
   (the squids' and judge's, code that does not change: the better sign of the host's speed, since
   the loop lives in the first-level cache and the world's work, like the daemon's, does not).
7. ``--flap-seconds F`` (issue 16): after the window, quiet and flapping segments of
   ``--flap-segment`` seconds in turn (alternating cancels a shared box's drift: two quiet
   windows one after the other differ by up to 2x here), F seconds of flapping in all. While
   flapping, the judge dies for ``--flap-down`` seconds every ``--flap-every`` (± 0.5 s) seconds
   (by default 1.5 s of every 6 s, the issue's blinking judge): ``flapjudge.py`` closes its
   listeners and connections and opens them again on signals. Printed: checks/s quiet vs.
   flapping (goal: flapping >= 70 % of quiet) and the failures stored over the whole run. Every
   proxy is a healthy squid, so each stored failure (any code) is a healthy proxy blamed for our
   trouble: the goal is 0.
8. **What production asks of the daemon besides checks** (``Callers``), from READY to SIGTERM: the
   daemon gets a ``NOTIFY_SOCKET`` the bench listens on, as under the shipped unit
   (``Type=notify``), so it sends ``STATUS=`` with the fleet's counts at every heartbeat (5 s), and
   ``/metrics`` is scraped every ``--scrape-every`` s (default 30, the Prometheus job in
   docs/grafana.md; 0: none). Both read the fleet summary, whose cost grows with N; their CPU is the
   daemon's and is in the window's figure. Before issue 21's fourth pass the bench did neither, and
   at N = 100,000 on SQLite the two cost 15 % of a core that the figure did not show.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import threading
import statistics
import subprocess
import sys
import time
from pathlib import Path

from world import child_cpu, squid_child, squid_conf

from proxycheck.world import Child, free_port, stop_all

CLK_TCK = os.sysconf("SC_CLK_TCK")



def in_private_netns() -> str | None:
    """None when the only network interface is ``lo`` and it is up (a namespace of our own), else why not."""
    ifaces = sorted(name for _, name in socket.if_nameindex())  # this process's namespace (sysfs may show the host's)
    if ifaces != ["lo"]:
        return (f"network interfaces {ifaces}: --live listens on the wildcard address, so run it in a network namespace "
                f"of its own: unshare --net sh -c 'ip link set lo up && .venv/bin/python bench/daemon_bench.py --live ...'")
    if ",UP" not in subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True).stdout:
        return "lo is down in this network namespace: run `ip link set lo up` first"
    return None


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per CPU (busy, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals]
            idle = v[3] + v[4]
            out[name] = (sum(v) - idle, sum(v))
    return out


def cpu_util(a: dict, b: dict) -> dict[str, float]:
    return {k: (b[k][0] - a[k][0]) / max(1, b[k][1] - a[k][1]) for k in a}


def start_squids(workdir: Path, port: int, count: int, cpus: set[int] | None) -> list[Child]:
    squids = []
    for k in range(count):
        conf = workdir / f"live-squid-{k}.conf"
        conf.write_text(f"http_port {port + k}\n" + squid_conf(k, port + k, 0, workdir, access_log=False))
        squid = squid_child(f"squid {k}", conf, workdir / f"live-squid-{k}.out", workdir / f"cache-{k}.log", cpus)
        squid.spawn()
        squids.append(squid)
    return squids


def run_live(world, args, helpers) -> list[str]:
    """``world``: daemon_bench.World with the judge started; ``helpers``: daemon_bench's module.
    One measurement per N in ``args.proxies``, then the table of all of them."""
    h = helpers
    why = in_private_netns()
    if why:
        raise SystemExit(why)
    if args.database == "postgresql":
        h.pg_socket()
    cpus = sorted(os.sched_getaffinity(0))
    daemon_cpus, world_cpus = ({cpus[-1]}, set(cpus[:-1])) if len(cpus) >= 2 else (None, None)
    if world_cpus:
        os.sched_setaffinity(world.judge.proc.pid, world_cpus)
    os.chmod(world.workdir, 0o777)  # squid drops privileges to `proxy` and writes its logs here
    squids = start_squids(world.workdir, args.live_port, args.squids, world_cpus)
    h.CHILDREN.extend(squids)
    deadline = time.monotonic() + 60
    for k in range(args.squids):
        while h.refused(h.address(k), args.live_port + k):
            for sq in squids:
                sq.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"squid {k} does not accept on {h.address(k)}:{args.live_port + k}")
            time.sleep(0.1)
    flapper = JudgeFlapper(world, args.flap_every, args.flap_down, world_cpus, h) if args.flap_seconds > 0 else None
    out, rows = [], []
    try:
        for n in args.proxies:
            lines, row = live_one(world, args, h, n, squids, daemon_cpus, world_cpus, flapper)
            print("\n".join(lines), flush=True)  # as each N ends; the table of all of them comes last
            rows.append(row)
    finally:
        stop_all(squids, grace=10)
    code = args.code or "this checkout"
    out.append(h.table(f"live daemon, {args.database}, {code}: asked rate {args.rate:g} checks/s "
                       f"([health].interval = N / rate), steady state, concurrency {args.concurrency}",
                       ["N", "interval s", "asked/s", "done/s", "daemon CPU ms/check", "core use", "DB server ms/check",
                        "lag p50 s", "lag p99 s", "probes/check", "healthy", "load", "core ref ms", "world ms/check"], rows))
    return out


REFERENCE_LOOP = "import time\nt = time.process_time()\ns = 0\nfor i in range(3_000_000):\n    s += i * i\nprint(time.process_time() - t)"
QUIET_REFERENCE_MS = 350  # the fastest REFERENCE_LOOP seen on our 2-CPU boxes (bench/README.md, "the third pass")


def reference_ms(cpus: set[int] | None, runs: int = 5) -> list[float]:
    """How fast the daemon's core is right now: a fixed pure-Python loop, ``runs`` times, in fresh
    processes pinned to ``cpus``; CPU ms of each, sorted. On a shared host other tenants slow a core
    without any steal time showing, and every CPU-per-check figure rises with it. A coarse sign, not
    a correction factor: the loop hardly touches memory, so it slows less than the daemon does (on
    the contended box of issue 21's third pass it took 350 to 740 ms while the same build's CPU per
    check was 1.5 to 2 times the second pass's)."""
    argv = [sys.executable, "-c", REFERENCE_LOOP]
    if cpus:
        argv = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *argv]
    return sorted(1000 * float(subprocess.run(argv, capture_output=True, text=True, check=True).stdout) for _ in range(runs))


def live_one(world, args, h, n: int, squids: list[Child], daemon_cpus, world_cpus, flapper) -> tuple[list[str], list[str]]:
    s, port = args.squids, args.live_port
    interval = max(1.0, n / args.rate)
    asked = n / interval
    workdir = world.workdir
    csv = workdir / f"live-{n}.csv"
    with open(csv, "w") as fh:
        fh.write("type,address,port\n")
        fh.writelines(f"http,{h.address(j)},{port + j % s}\n" for j in range(n))
    dbs = h.Databases(args.database, workdir, args.keep)
    url = dbs.new(f"live{n}")
    http_port = free_port()
    config = world.config(f"live{n}", url, csv, daemon={"drain_grace": 10.0},
                          health={"interval": interval, "fast_interval": min(30.0, interval)}, http={"enabled": "true", "listen": f'"127.0.0.1:{http_port}"'})
    # The schema of the code under test: --code may be a checkout before or after a migration.
    code_env = {"PYTHONPATH": str(Path(args.code).resolve())} if args.code else {}
    h.run_cli(["db", "upgrade", "--config", str(config)], workdir / f"live{n}-upgrade.log", "db upgrade", env=code_env)
    t_seed = time.monotonic()
    seeded = seed_steady_state(url, config, csv, interval, args.seed_margin, args.exit_history)
    log = workdir / f"live{n}-run.log"
    ref_before = reference_ms(daemon_cpus)  # before the daemon runs on that core, and after it stopped
    argv = [*h.proxycheck_cli(), "run", "--config", str(config)]
    if daemon_cpus:
        argv = ["taskset", "-c", ",".join(map(str, sorted(daemon_cpus))), *argv]
    child = h.Child(f"run (live, {n})", argv, log)
    child.env = {**child.env, **code_env}
    callers = Callers(workdir, args.scrape_every)
    child.env = {**child.env, "NOTIFY_SOCKET": str(callers.path)}
    child.spawn()
    ready_at = child.wait_ready(poll=0.2)
    callers.scrape(http_port, workdir / "state" / "http-token")
    # The window starts after the warm-up, counted from READY and from the first seeded due time.
    time.sleep(max(args.warmup, t_seed + args.seed_margin + args.warmup - time.monotonic()))
    db = Db(url)
    token = (workdir / "state" / "http-token").read_text().strip()
    pid = child.proc.pid
    lag0 = scrape_lag(http_port, token)
    with h.PgServerCpu(url if args.database == "postgresql" else None) as server:
        server.mark_initial()
        server_cpu0 = server.cpu_s
        cpu0, load0 = cpu_times(), os.getloadavg()[0]
        world_cpu0 = sum(child_cpu(sq) for sq in squids) + h.proc_cpu(world.judge.proc.pid)
        user0, sys0 = user_sys(pid)
        samples = sample_window(db, child, pid, args.live_seconds, args.sample, h)
        user1, sys1 = user_sys(pid)
        util = cpu_util(cpu0, cpu_times())
        world_cpu = sum(child_cpu(sq) for sq in squids) + h.proc_cpu(world.judge.proc.pid) - world_cpu0
        server.sample()
        server_cpu = server.cpu_s - server_cpu0
    lag1 = scrape_lag(http_port, token)
    rss_now = h.proc_rss_kb(pid) or 0
    segments = flapper.alternate(db, child, args.flap_seconds, args.flap_segment) if flapper else []
    rc = child.stop(grace=60)  # SIGTERM, then SIGKILL after 60 s
    callers.close()
    ref_after = reference_ms(daemon_cpus)
    ref_median = statistics.median(ref_before + ref_after)

    (t0, id0, c0), (t1, id1, c1) = samples[0], samples[-1]
    window, checks, cpu = t1 - t0, id1 - id0, c1 - c0
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:]) if b[0] > a[0]]
    codes = db.codes_between(id0, id1)
    per_check = db.probes_ran(id0, id1)
    healthy = codes.get("healthy", 0)
    if lag0 is not None and lag1 is not None:
        lag = {le: lag1[le] - lag0.get(le, 0.0) for le in lag1}
        p50, p99 = quantile(lag, 0.5), quantile(lag, 0.99)
        lag_text = f"p50 {p50:.3f} s, p99 {p99:.3f} s over {lag[max(lag)]:,.0f} claims"
        lag_cells = [f"{p50:.3f}", f"{p99:.3f}"]
    else:
        lag_text, lag_cells = "not exported by this code (no proxycheck_claim_delay_seconds)", ["-", "-"]
    text = log.read_text(errors="replace")
    errors = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line][:5]
    degraded = text.count("checker degraded, no proxy will be judged")
    done = checks / window
    server_ms = f"{1000 * server_cpu / max(1, checks):.2f}" if args.database == "postgresql" else "-"
    out = [
        f"live daemon: N={n:,} distinct proxies on {s} squids (wildcard listeners, own netns), {args.database}, "
        f"concurrency {args.concurrency}, daemon on CPU {sorted(daemon_cpus) if daemon_cpus else 'any'}, "
        f"world on CPU {sorted(world_cpus) if world_cpus else 'any'}, code: {args.code or 'this checkout'}",
        f"  steady state seeded: every proxy healthy, due over {interval:g} s; last results of {', '.join(seeded['probes'])} "
        f"aged over their schedules ({', '.join(f'{k} {v:g} s' for k, v in seeded['every'].items())}); "
        f"{seeded['readings']} exit IP readings per proxy",
        f"  READY after {ready_at:.1f} s; window {window:.1f} s; load average at window start {load0:.1f}",
        f"  **asked {asked:.1f} checks/s ([health].interval {interval:g} s), done {done:.1f} checks/s** "
        f"({checks:,} in {window:.1f} s; per {args.sample:g} s sample: min {min(rates, default=0):.1f}, "
        f"max {max(rates, default=0):.1f}); {per_check:.2f} probes ran per check",
        f"  daemon CPU in window: {cpu:.2f} s = {100 * cpu / window:.0f}% of a core; "
        f"**{1000 * cpu / max(1, checks):.2f} ms CPU per stored check** (probes + dispatch + store + metrics + logging): "
        f"user {1000 * (user1 - user0) / max(1, checks):.2f} + sys {1000 * (sys1 - sys0) / max(1, checks):.2f} ms "
        f"(sys includes loopback's kernel work for the squids' side of each connection)",
        f"  dispatch lag (claimed minus due, /metrics): {lag_text}",
        callers.text(),
        *([f"  PostgreSQL server CPU for this database: {server_cpu:.2f} s = {server_ms} ms per check"]
          if args.database == "postgresql" else []),
        f"  world (judge + squids) CPU in window: {world_cpu:.2f} s = {1000 * world_cpu / max(1, checks):.2f} ms per check",
        f"  the core's speed (bench/daemon_live.py, reference_ms; {QUIET_REFERENCE_MS} ms at best, more when other "
        f"tenants share it): before {', '.join(f'{v:.0f}' for v in ref_before)} ms, after "
        f"{', '.join(f'{v:.0f}' for v in ref_after)} ms",
        "  CPU utilisation in window (all processes on the box): " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(util.items())),
        f"  window's checks: {healthy:,} healthy of {checks:,}; codes {dict(sorted(codes.items()))}",
        f"  RSS at window end {h.mb(rss_now):.1f} MB; peak RSS (wait4) {h.mb(child.peak_rss_kb):.1f} MB; "
        f"exit code {rc}; errors in log: {len(errors)}",
    ]
    if segments:
        quiet = [seg for seg in segments if not seg[0]]
        flapping = [seg for seg in segments if seg[0]]
        q_checks, q_time = sum(b - a for _, _, a, b, _ in quiet), sum(t for _, t, _, _, _ in quiet)
        f_checks, f_time = sum(b - a for _, _, a, b, _ in flapping), sum(t for _, t, _, _, _ in flapping)
        q_rate, f_rate = q_checks / q_time, f_checks / f_time
        blamed = sum(k for c, k in db.codes_between(id0, segments[-1][3]).items() if c != "healthy")
        out += [
            f"  alternating {args.flap_segment:g} s segments, quiet then flapping (the judge killed for {args.flap_down:g} s "
            f"every {args.flap_every:g} s ± 0.5 s: {sum(seg[4] for seg in flapping)} outages); the daemon went degraded "
            f"{degraded} times",
            "  per segment (checks/s): " + ", ".join(f"{'F' if f else 'Q'} {(b - a) / t:.1f}" for f, t, a, b, _ in segments),
            f"  **checks/s quiet {q_rate:.1f} ({q_checks:,} in {q_time:.0f} s), flapping {f_rate:.1f} ({f_checks:,} in "
            f"{f_time:.0f} s) = {100 * f_rate / max(q_rate, 1e-9):.0f} % of quiet (goal >= 70 %); "
            f"healthy proxies stored as failed, whole run: {blamed} (goal 0)**",
        ]
    out += [f"    {e}" for e in errors]
    db.engine.dispose()
    dbs.drop_all()
    row = [f"{n:,}", f"{interval:g}", f"{asked:.0f}", f"{done:.0f}", f"{1000 * cpu / max(1, checks):.2f}",
           f"{100 * cpu / window:.0f} %", server_ms, *lag_cells, f"{per_check:.2f}", f"{healthy:,}/{checks:,}", f"{load0:.1f}", f"{ref_median:.0f}",
           f"{1000 * world_cpu / max(1, checks):.2f}"]
    return out, row


class Db:
    """The bench's own reads of the daemon's database (SQLite or PostgreSQL), one short
    connection each, never holding a transaction open across samples."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        if url.startswith("sqlite"):
            path = url.split("sqlite:///", 1)[1]
            self.engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool)
        else:
            self.engine = create_engine(url, poolclass=NullPool)

    def scalar(self, sql: str, **params) -> int:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar() or 0

    def max_check_id(self) -> int:
        return self.scalar("SELECT COALESCE(MAX(id), 0) FROM checks")

    def codes_between(self, lo: int, hi: int) -> dict[str, int]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT COALESCE(code, 0), COUNT(*) FROM checks WHERE id > :lo AND id <= :hi GROUP BY 1"),
                                {"lo": lo, "hi": hi})
            return {("healthy" if c == 0 else str(c)): k for c, k in rows}

    def probes_ran(self, lo: int, hi: int) -> float:
        """Probes that ran per stored check (the steady state's cost: the costly ones are carried)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT probes FROM checks WHERE id > :lo AND id <= :hi"), {"lo": lo, "hi": hi}).all()
        docs = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]
        return sum(1 for d in docs for p in d or () if not p.get("carried")) / max(1, len(docs))


def seed_steady_state(url: str, config: Path, csv: Path, interval: float, margin: float, readings: int = 0) -> dict:
    """Put the fleet where a daemon that has run for hours would have it (rule 6 of the docstring):
    every proxy healthy, due once in ``[margin, margin + interval)`` s from now, and each probe's
    last result (one real check of proxy 0 through the live world, copied) aged uniformly over
    its schedule, so a check runs the costly probes exactly as often as the default schedules do.
    ``readings``: each proxy's exit IP history (store/exits.py), one reading per past visit,
    ``interval`` apart, as many as the store keeps after that many checks."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import bindparam, column, insert, inspect, table, update

    from proxycheck import store
    from proxycheck.checker import Checker
    from proxycheck.config import load_settings
    from proxycheck.probes import REGISTRY
    from proxycheck.probes.schedule import schedule_for
    from proxycheck.selftest import preflight
    from proxycheck.sources import read_csv_file
    from proxycheck.store.exits import encode
    from proxycheck.store.models import ExitHistoryRow, ProbeResultRow, ProxyRow, UTCDateTime
    from proxycheck.store.probe_results import outcome_doc

    settings = load_settings(str(config))
    proxies = read_csv_file(csv).deduplicated()

    async def one_check():
        checker = Checker(settings)
        status = await preflight(settings, checker.ssl_context)
        if not status.ok:
            raise SystemExit(f"seeding: the checker's preflight failed: {status.reason}")
        return await checker.check(proxies[0], status.own_ips)

    template = asyncio.run(one_check())
    if not template.healthy:
        raise SystemExit(f"seeding: proxy 0 is not healthy through the live world: {template.reason} {template.detail}")
    docs = {o.name: outcome_doc(o) for o in template.probes if not o.skipped}
    every = {spec.name: schedule_for(settings, spec).every or interval for spec in REGISTRY}
    rng = random.Random(21)
    engine = store.make_engine(url, writer=True)
    try:
        now = datetime.now(UTC)
        store.sync_source(engine, f"csv:{csv}", proxies, now, policy=settings.health, spread=False)
        with engine.begin() as conn:
            ids = [r[0] for r in conn.execute(ProxyRow.__table__.select().with_only_columns(ProxyRow.id))]
        facts = {"state": "healthy", "consecutive_successes": 10, "consecutive_failures": 0, "failing_streak": 0,
                 "code": None, "reason": None, "latency_ms": template.latency_ms, "exit_ip": template.exit_ip,
                 "anonymity": template.anonymity}
        rows, results, seen = [], [], []
        for pid in ids:
            last = now - timedelta(seconds=rng.uniform(0, interval))
            rows.append({"pid": pid, "changed": now - timedelta(days=1), "last": last})
            for name, doc in docs.items():
                results.append({"proxy_id": pid, "probe": name, "passed": True, "outcome": doc,
                                "ran_at": now - timedelta(seconds=rng.uniform(0, max(every[name], interval)))})
            if template.exit_ip and readings:
                seen.append((pid, [(last - timedelta(seconds=k * interval), template.exit_ip) for k in range(readings - 1, -1, -1)]))
        with engine.begin() as conn:
            for k in range(0, len(results), 20_000):
                conn.execute(insert(ProbeResultRow), results[k:k + 20_000])
            if inspect(conn).has_table(ExitHistoryRow.__tablename__):
                for k in range(0, len(seen), 5_000):
                    conn.execute(insert(ExitHistoryRow), [{"proxy_id": pid, "readings": encode(kept)} for pid, kept in seen[k:k + 5_000]])
            else:  # --code with a schema before 0010 (a before/after across the migration): a row per reading
                old = table("exit_readings", column("proxy_id"), column("seen_at", UTCDateTime()), column("ip"))
                flat = [{"proxy_id": pid, "seen_at": at, "ip": ip} for pid, kept in seen for at, ip in kept]
                for k in range(0, len(flat), 20_000):
                    conn.execute(insert(old), flat[k:k + 20_000])
        due_from = datetime.now(UTC)  # after the inserts, however long they took: none is due before the margin
        for row in rows:
            row["due"] = due_from + timedelta(seconds=margin + rng.uniform(0, interval))
        with engine.begin() as conn:
            conn.execute(update(ProxyRow).where(ProxyRow.id == bindparam("pid")).values(
                **facts, state_changed_at=bindparam("changed"), last_checked_at=bindparam("last"),
                last_success_at=bindparam("last"), next_check_at=bindparam("due")), rows)
    finally:
        engine.dispose()
    return {"probes": sorted(docs), "every": {k: v for k, v in every.items() if k in docs},
            "readings": readings if template.exit_ip else 0}


class Callers:
    """systemd and Prometheus, as they call a daemon in production (point 8): a datagram socket
    for ``NOTIFY_SOCKET`` counting the ``STATUS=`` messages, and a thread scraping ``/metrics``."""

    def __init__(self, workdir: Path, scrape_every: float) -> None:
        self.path = workdir / "notify.sock"
        self.path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.5)
        self.scrape_every = scrape_every
        self.statuses = self.scrapes = self.scrape_errors = 0
        self.scrape_s: list[float] = []  # each scrape's wall time
        self._stop = threading.Event()
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            self.statuses += b"STATUS=" in data

    def scrape(self, port: int, token_file: Path) -> None:
        """From now until ``close``, GET /metrics every ``scrape_every`` s (none when 0)."""
        if self.scrape_every <= 0:
            return

        def loop() -> None:
            import urllib.request

            token = token_file.read_text().strip()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
            while not self._stop.wait(self.scrape_every):
                t = time.monotonic()
                try:
                    with urllib.request.urlopen(req, timeout=60) as resp:
                        resp.read()
                    self.scrapes += 1
                    self.scrape_s.append(time.monotonic() - t)
                except OSError:
                    self.scrape_errors += 1

        threading.Thread(target=loop, daemon=True).start()

    def text(self) -> str:
        longest = f", longest {max(self.scrape_s):.2f} s" if self.scrape_s else ""
        scrapes = (f"a /metrics scrape every {self.scrape_every:g} s ({self.scrapes} done{longest}, {self.scrape_errors} failed)"
                   if self.scrape_every > 0 else "no /metrics scrapes (--scrape-every 0)")
        return f"  production's callers, READY to SIGTERM: {self.statuses} STATUS= messages on NOTIFY_SOCKET, {scrapes}"

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self.path.unlink(missing_ok=True)


def scrape_lag(port: int, token: str) -> dict[float, float] | None:
    """``proxycheck_claim_delay_seconds`` buckets (le -> cumulative count) from /metrics; None if
    the daemon does not export it (older code)."""
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("proxycheck_claim_delay_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = float(line.rsplit(" ", 1)[1])
    return out or None


def quantile(buckets: dict[float, float], q: float) -> float:
    """Prometheus's ``histogram_quantile``: linear within the bucket that holds rank q."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return float("nan")
    rank, prev_bound, prev_count = q * total, 0.0, 0.0
    for b in bounds:
        if buckets[b] >= rank:
            if b == float("inf"):
                return prev_bound
            return prev_bound + (b - prev_bound) * (rank - prev_count) / max(buckets[b] - prev_count, 1e-9)
        prev_bound, prev_count = b, buckets[b]
    return bounds[-1]


def user_sys(pid: int) -> tuple[float, float]:
    """A process's user and system CPU seconds so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def sample_window(db: Db, child, pid: int, seconds: float, every: float, h) -> list[tuple[float, int, float]]:
    """(monotonic, max check id, daemon CPU s) every ``every`` seconds for ``seconds``."""
    samples = []
    end = time.monotonic() + seconds
    while True:
        samples.append((time.monotonic(), db.max_check_id(), h.proc_cpu(pid)))
        if samples[-1][0] >= end or not child.running():
            return samples
        time.sleep(min(every, max(0.0, end - time.monotonic())))


class JudgeFlapper:
    """The judge process is ``flapjudge.py`` (started before the daemon, so quiet and flapping
    segments share it), which stops and restarts its judge on SIGUSR1/SIGUSR2: an outage lasts
    ``down`` s, not a Python start on a loaded box."""

    def __init__(self, world, every: float, down: float, cpus: set[int] | None, h) -> None:
        self.world, self.every, self.down = world, every, down
        self.rng = random.Random(16)  # the kill's phase varies against the heartbeat; the same every run
        old = world.judge
        at = old.argv.index("judge")
        flap = [sys.executable, str(Path(__file__).with_name("flapjudge.py")), *old.argv[at + 1:]]
        old.stop(grace=10)
        world.judge = h.Child("judge (flapping)", flap, old.log.with_name("flapjudge.log"), every=3600).spawn()
        if cpus:
            os.sched_setaffinity(world.judge.proc.pid, cpus)
        deadline = time.monotonic() + 30
        while "judge listening" not in world.judge.log.read_text(errors="replace"):
            if not world.judge.running() or time.monotonic() > deadline:
                raise SystemExit(f"flapjudge did not start:\n{world.judge.tail()}")
            time.sleep(0.05)

    def alternate(self, db: Db, child, flap_seconds: float, segment: float) -> list[tuple[bool, float, int, int, int]]:
        """Quiet and flapping segments of ``segment`` s in turn until ``flap_seconds`` of flapping
        (alternating cancels the drift of a shared box); each (flapping?, seconds, first id, last id, outages)."""
        out = []
        for k in range(max(1, round(flap_seconds / segment))):
            for flapping in (False, True):
                t0, id0 = time.monotonic(), db.max_check_id()
                outages = self._flap(segment) if flapping else (time.sleep(segment) or 0)
                out.append((flapping, time.monotonic() - t0, id0, db.max_check_id(), outages))
                if not child.running():
                    return out
        return out

    def _flap(self, seconds: float) -> int:
        pid = self.world.judge.proc.pid  # our own child, by PID
        end, outages = time.monotonic() + seconds, 0
        while True:
            up = max(0.0, self.every - self.down + self.rng.uniform(-0.5, 0.5))
            if time.monotonic() + up + self.down > end:
                time.sleep(max(0.0, end - time.monotonic()))
                return outages
            time.sleep(up)
            os.kill(pid, signal.SIGUSR1)
            outages += 1
            time.sleep(self.down)
            os.kill(pid, signal.SIGUSR2)

