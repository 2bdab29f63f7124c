"""Benchmark: does a flood of ``/status`` requests starve the daemon's checks?

    python bench/status_load.py [--proxies 10000] [--clients 50] [--seconds 30]

A real ``proxycheck run`` (the installed CLI, SQLite) with ``[http]`` enabled checks
``--proxies`` proxies: ``--squid-proxies`` of them are real squids of bench/world.py (judge,
trustme CA, 127.42.K.J), the rest closed loopback ports (refused at once: code 25, the cheapest
real check, as daemon_bench.py). Every proxy is due every ``--interval`` seconds (healthy or not),
so the daemon has a fixed schedule to keep: ``proxies / interval`` checks per second.

Phases, after READY and one full interval of warm-up (the first checks are spread over it):
1. ``before``: ``--quiet`` seconds with no HTTP load.
2. ``during``: ``--clients`` concurrent clients, each in a loop ``GET /status`` (the full fleet,
   exactly ``status --json``) for ``--seconds`` seconds, each request with a 60 s timeout.
3. ``after``: ``--quiet`` seconds with no load. Then SIGTERM, timed.

Measured per phase: checks written per second (``max(checks.id)`` read every second from a
reader connection: cheap and monotonic), proxies more than 10 s late (``next_check_at``), the
daemon's RSS from /proc (every 0.5 s). For ``during``: ``/status`` answers per second by status
code, and p50/p99/max latency of the 200s.

Rules: loopback only; every process is our child and is stopped by its PID; everything lives in
one temp dir, removed at the end (``--keep`` keeps it). ``--code DIR`` runs the daemon from
another checkout (PYTHONPATH) for an A/B run of the same load against older code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon_bench import address, child_env, closed_port, proc_cpu, proc_rss_kb  # noqa: E402 - same loopback layout
from world import World, free_port

from proxycheck.config_targets import targets_toml

TOKEN = "status-load-bench-token-of-32-characters"  # config.py: at least 32


def write_files(world: World, n: int, squid_n: int, interval: float, concurrency: int) -> tuple[Path, int]:
    wd = world.workdir
    port = closed_port(n)
    csv = wd / "proxies.csv"
    with open(csv, "w") as fh:
        fh.write("type,address,port\n")
        for hostport in world.proxies(squid_n):
            host, p = hostport.split(":")
            fh.write(f"http,{host},{p}\n")
        fh.writelines(f"http,{address(j)},{port}\n" for j in range(n - squid_n))
    http_port = free_port("127.0.0.1")
    q = lambda s: json.dumps(str(s))  # noqa: E731 - a JSON string is a TOML basic string
    lines = [f"state_dir = {q(wd / 'state')}", "", targets_toml(world.targets),
              "[check]", f"concurrency = {concurrency}",
              "", "[daemon]", f"sources = [{q(csv)}]", "dispatch_interval = 0.25", "drain_grace = 10.0",
              "", "[health]", f"interval = {interval}", f"fast_interval = {interval}", f"failing_interval = {interval}",
              "backoff_factor = 1.0", f"max_interval = {interval}",
              "", "[http]", "enabled = true", f'listen = "127.0.0.1:{http_port}"', f"token = {q(TOKEN)}", ""]
    config = wd / "proxycheck.toml"
    config.write_text("\n".join(lines))
    config.chmod(0o600)  # it holds [http].token: config.py refuses a file others can read
    return config, http_port


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Sampler:
    """Every second: max(checks.id) and the late proxies; every 0.5 s: the daemon's RSS."""

    def __init__(self, db: Path, pid: int) -> None:
        from proxycheck.store import make_engine

        self.engine = make_engine(f"sqlite:///{db}", writer=False)
        self.pid = pid
        self.checks: list[tuple[float, int, int]] = []  # (t, max id, late proxies)
        self.rss: list[tuple[float, int]] = []
        self.helpers: list[tuple[float, int]] = []  # RSS of the daemon's child processes (the /status helper)
        self.cpu: list[tuple[float, float]] = []  # (t, the daemon's user+sys seconds)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._db_loop, daemon=True), threading.Thread(target=self._rss_loop, daemon=True)]

    def __enter__(self) -> Sampler:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        self.engine.dispose()

    def _db_loop(self) -> None:
        from sqlalchemy import func, select, true

        from proxycheck.store.models import CheckRow, ProxyRow

        while not self._stop.wait(1.0):
            late_before = datetime.now(UTC) - timedelta(seconds=10)
            try:
                with self.engine.begin() as conn:
                    top = conn.scalar(select(func.max(CheckRow.id))) or 0
                    late = conn.scalar(select(func.count()).where(ProxyRow.enabled == true(), ProxyRow.next_check_at < late_before))
            except Exception as exc:  # noqa: BLE001 - a locked read is one lost sample, not a failed bench
                print(f"  (sample skipped: {exc})", flush=True)
                continue
            self.checks.append((time.monotonic(), top, late))

    def _rss_loop(self) -> None:
        while not self._stop.wait(0.5):
            kb = proc_rss_kb(self.pid)
            if kb:
                self.rss.append((time.monotonic(), kb))
                self.helpers.append((time.monotonic(), sum(proc_rss_kb(c) or 0 for c in children(self.pid))))
                self.cpu.append((time.monotonic(), proc_cpu(self.pid)))

    def phase(self, start: float, end: float) -> dict:
        pts = [p for p in self.checks if start <= p[0] <= end]
        rss = [kb for t, kb in self.rss if start <= t <= end]
        rate = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) if len(pts) >= 2 else 0.0
        helpers = [kb for t, kb in self.helpers if start <= t <= end]
        cpu = [c for t, c in self.cpu if start <= t <= end]
        cpu_share = (cpu[-1] - cpu[0]) / (end - start) if len(cpu) >= 2 else 0.0
        return {"checks_per_s": rate, "cpu_share": cpu_share, "late_max": max((p[2] for p in pts), default=0),
                "rss_start_mb": rss[0] / 1024 if rss else 0, "rss_max_mb": max(rss) / 1024 if rss else 0,
                "rss_end_mb": rss[-1] / 1024 if rss else 0,
                "helper_max_mb": max(helpers) / 1024 if helpers else 0}


async def load(base: str, clients: int, seconds: float) -> dict:
    """``clients`` loops of ``GET /status`` on one aiohttp session (its C parser keeps the load
    generator's own CPU small next to the daemon's: the box has 2 cores)."""
    import aiohttp

    results: list[tuple[int, float]] = []
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=60),
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        async def one_client() -> None:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                retry = 0.0
                try:
                    async with session.get("/status") as answer:
                        await answer.read()
                        code = answer.status
                        if code == 503:
                            retry = float(answer.headers.get("Retry-After", "1"))
                except (aiohttp.ClientError, TimeoutError):
                    code = -1
                results.append((code, time.perf_counter() - began))
                if retry:
                    await asyncio.sleep(retry)

        started = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.monotonic() - started
    ok = sorted(lat for code, lat in results if code == 200)
    by_code: dict[str, int] = {}
    for code, _ in results:
        by_code[str(code)] = by_code.get(str(code), 0) + 1

    def pct(p: float) -> float:
        return 1000 * ok[min(len(ok) - 1, int(p * len(ok)))] if ok else float("nan")

    return {"wall": wall, "by_code": by_code, "ok_per_s": len(ok) / wall, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": 1000 * ok[-1] if ok else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxies", type=int, default=10_000)
    ap.add_argument("--squid-proxies", type=int, default=256, help="how many of them are real squids (the rest refuse)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the load phase")
    ap.add_argument("--quiet", type=float, default=20.0, help="length of the before and after phases")
    ap.add_argument("--interval", type=float, default=60.0, help="every proxy is due every this many seconds")
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--code", type=Path, help="run the daemon from this checkout instead (PYTHONPATH), for A/B")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    assert 0 < args.squid_proxies <= args.proxies and args.clients <= 200 and args.seconds <= 600, "keep it bounded"

    began = time.monotonic()
    world = World(max_proxies=args.squid_proxies, count=False, pin=False)
    proc = None
    try:
        world.start()
        config, http_port = write_files(world, args.proxies, args.squid_proxies, args.interval, args.concurrency)
        env = child_env()
        if args.code:
            env["PYTHONPATH"] = str(args.code.resolve())
        cli = [sys.executable, "-c", "import sys; from proxycheck.cli import main; sys.argv[0] = 'proxycheck'; main()"]
        up = subprocess.run([*cli, "db", "upgrade", "--config", str(config)], env=env, capture_output=True, text=True)
        if up.returncode != 0:
            raise SystemExit(f"db upgrade failed:\n{up.stderr}")
        log = world.workdir / "daemon.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*cli, "run", "--config", str(config)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=world.workdir)
        t0 = time.monotonic()
        while "ready: " not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit(f"the daemon did not get ready:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        print(f"ready after {time.monotonic() - t0:.1f} s; warming up for one interval ({args.interval:g} s)", flush=True)
        with Sampler(world.workdir / "state" / "proxycheck.db", proc.pid) as sampler:
            time.sleep(args.interval + 2)
            b0 = time.monotonic()
            time.sleep(args.quiet)
            d0 = time.monotonic()
            print(f"before: done; {args.clients} clients on /status for {args.seconds:g} s", flush=True)
            traffic = asyncio.run(load(f"http://127.0.0.1:{http_port}", args.clients, args.seconds))
            a0 = time.monotonic()
            time.sleep(args.quiet)
            e0 = time.monotonic()
        phases = {"before": sampler.phase(b0, d0), "during": sampler.phase(d0, a0), "after": sampler.phase(a0, e0)}
        stop_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # our own child, by PID
        try:
            rc = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        exit_s = time.monotonic() - stop_at
        text = log.read_text(errors="replace")
        problems = {"ERROR lines": text.count(" ERROR "), "tracebacks": text.count("Traceback")}
        errors = {k: v for k, v in problems.items() if v}
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        world.stop()
        if not args.keep:
            world.remove()

    target = args.proxies / args.interval
    print(f"\n{args.proxies:,} proxies ({args.squid_proxies} squid, the rest refused), each due every {args.interval:g} s: "
          f"schedule {target:.0f} checks/s; concurrency {args.concurrency}; daemon from {args.code or 'this checkout'}")
    print("| phase | checks/s | daemon CPU (cores) | proxies >10 s late (max) | daemon RSS start / max / end MB | helper RSS max MB |\n|---|---|---|---|---|---|")
    for name, p in phases.items():
        print(f"| {name} | {p['checks_per_s']:.0f} | {p['cpu_share']:.2f} | {p['late_max']:,} | "
              f"{p['rss_start_mb']:.0f} / {p['rss_max_mb']:.0f} / {p['rss_end_mb']:.0f} | {p['helper_max_mb']:.0f} |")
    t = traffic
    print(f"\n/status under {args.clients} clients for {t['wall']:.1f} s: {t['ok_per_s']:.1f} answers 200/s, "
          f"p50 {t['p50_ms']:.0f} ms, p99 {t['p99_ms']:.0f} ms, max {t['max_ms']:.0f} ms; answers by status {t['by_code']}")
    print(f"SIGTERM to exit {exit_s:.1f} s, exit code {rc}; log problems: {errors or 'none'}")
    print(f"total bench time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
