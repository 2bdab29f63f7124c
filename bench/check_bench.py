"""Benchmark: proxycheck's full probe suite against a minimal raw-asyncio client, same traffic.

    python bench/check_bench.py --proxies 100 1000 --concurrency 100 [--repeat 3] [--profile]

Brings up a judge and ceil(N/128) squids on loopback (world.py), then for each N runs the raw
client and the suite, each in a fresh child process (runner.py), and prints wall time,
proxies/s, CPU ms per proxy and peak RSS for both, the suite/raw CPU ratio against the 1.5x
target, what the judge and squids burnt meanwhile, and how many connections, tunnels and
requests squid 0 saw per proxy. ``--profile`` adds one cProfile'd run of each
client at the largest N, broken down by layer. bench/README.md says how to read it all.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from world import OWN_IP, Counts, World, WorldError

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 1.5


@dataclass
class Run:
    kind: str
    n: int
    concurrency: int
    wall_s: float
    cpu_s: float  # the measured window, in the child
    user_s: float
    sys_s: float
    process_cpu_s: float  # the whole child process (start-up and imports included), from wait4
    peak_rss_mb: float
    growth_mb: float  # peak RSS minus RSS just before the window
    failed: int
    failures: list[str]
    judge_cpu_s: float
    squid_cpu_s: float
    listen_drops: int
    counts: Counts | None
    gc_s: list[float]  # time in the cyclic GC during the window, by generation
    gc_runs: list[int]

    @property
    def per_s(self) -> float:
        return self.n / self.wall_s

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s * 1000 / self.n


def measure(world: World, kind: str, n: int, concurrency: int, config: Path, profile: Path | None = None) -> Run:
    proxies = world.proxies(n)
    spec = {"config": str(config), "proxies": proxies, "concurrency": concurrency, "own_ips": [OWN_IP],
            "profile": str(profile) if profile else None}
    spec_path = world.workdir / f"spec-{kind}-{n}.json"
    spec_path.write_text(json.dumps(spec))
    err_path = world.workdir / f"runner-{kind}-{n}.err"
    mark = world.mark()
    with open(err_path, "wb") as err:
        cpus = world.client_cpus
        proc = subprocess.Popen([sys.executable, str(HERE / "runner.py"), kind, str(spec_path)],
                                stdout=subprocess.PIPE, stderr=err, cwd=HERE,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, nobody else's
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
    load, counts = world.since(mark, proxies)
    if proc.returncode != 0 or not out.strip():
        raise SystemExit(f"the {kind} runner failed (exit {proc.returncode}):\n{err_path.read_text()[-3000:]}")
    d = json.loads(out.decode().strip().splitlines()[-1])
    return Run(kind, n, concurrency, d["wall_s"], d["user_s"] + d["sys_s"], d["user_s"], d["sys_s"],
               usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, (d["hwm_kb"] - d["rss_before_kb"]) / 1024,
               d["failed"], d["failures"], load["judge_cpu"], load["squid_cpu"], load["listen_drops"], counts,
               d["gc_s"], d["gc_runs"])


def print_table(runs: list[Run]) -> None:
    head = (f"{'client':<6} {'N':>5} {'conc':>4} {'wall s':>7} {'proxies/s':>9} {'CPU ms/proxy':>12} "
            f"{'(user+sys)':>13} {'proc CPU s':>10} {'peak RSS MB':>11} {'RSS growth':>10} {'healthy':>9}"
            f" {'GC ms/proxy':>11} | {'judge CPU s':>11} {'squid CPU s':>11} {'ListenDrops':>11}")
    print(head)
    print("-" * len(head))
    for r in runs:
        print(f"{r.kind:<6} {r.n:>5} {r.concurrency:>4} {r.wall_s:>7.2f} {r.per_s:>9.1f} {r.cpu_ms:>12.2f} "
              f"{r.user_s * 1000 / r.n:>6.2f}+{r.sys_s * 1000 / r.n:<6.2f} {r.process_cpu_s:>10.2f} "
              f"{r.peak_rss_mb:>11.1f} {r.growth_mb:>10.1f} {r.n - r.failed:>4}/{r.n:<4} {sum(r.gc_s) * 1000 / r.n:>11.2f}"
              f" | {r.judge_cpu_s:>11.2f} {r.squid_cpu_s:>11.2f} {r.listen_drops:>11}")


def print_verdict(runs: list[Run]) -> None:
    by: dict[tuple[int, str], list[Run]] = defaultdict(list)
    for r in runs:
        by[(r.n, r.kind)].append(r)
    print()
    for n in sorted({r.n for r in runs}):
        suite, raw = by.get((n, "suite")), by.get((n, "raw"))
        if not suite or not raw:
            continue
        s, w = statistics.median(r.cpu_ms for r in suite), statistics.median(r.cpu_ms for r in raw)
        ratio = s / w
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"N={n:<5} CPU per proxy: suite {s:.2f} ms, raw {w:.2f} ms -> suite/raw = {ratio:.2f}x "
              f"(target <= {TARGET_RATIO}x: {verdict}); peak RSS suite {statistics.median(r.peak_rss_mb for r in suite):.1f} MB, "
              f"raw {statistics.median(r.peak_rss_mb for r in raw):.1f} MB")
    sizes = sorted({r.n for r in runs})
    for kind in ("suite", "raw"):
        peaks = [(n, statistics.median(r.peak_rss_mb for r in by[(n, kind)])) for n in sizes if by.get((n, kind))]
        if len(peaks) > 1:
            steps = ", ".join(f"N={n0}->{n1}: {(b - a) * 1024 / (n1 - n0):+.1f} KB/proxy"
                              for (n0, a), (n1, b) in zip(peaks, peaks[1:]))
            print(f"memory in N ({kind}): peak RSS " + " / ".join(f"{mb:.1f} MB at N={n}" for n, mb in peaks) + f" ({steps})")
    for r in runs:
        if r.failures:
            print(f"\n{r.kind} N={r.n}: {r.failed} proxies not healthy, first ones:")
            for line in r.failures:
                print("  " + line)


def print_counts(runs: list[Run]) -> None:
    seen = set()
    print("\nPer proxy, as squid 0 logged them (sample: squid 0's proxies; bytes as squid counts them):")
    for r in runs:
        if r.counts is None or (r.kind, r.n) in seen:
            continue
        seen.add((r.kind, r.n))
        print(f"  {r.kind:<5} N={r.n:<5} ({r.counts.sample:>3} sampled): {r.counts.row()}")


# -- profile ----------------------------------------------------------------------------------------

def layer(file: str, func: str) -> str:
    """Which layer a profile entry belongs to (by file path; C functions by their name)."""
    for pkg in ("httpcore", "httpx", "anyio", "h11", "proxycheck", "sniffio", "idna", "certifi"):
        if f"/{pkg}/" in file:
            return pkg if pkg != "proxycheck" else "proxycheck (our code)"
    if file == "~":
        if "_ssl." in func or "SSL" in func:
            return "C: OpenSSL (_ssl)"
        if "epoll" in func or "select" in func:
            return "C: epoll"
        if "socket" in func:
            return "C: socket syscalls"
        return "C: other builtins"
    if "/asyncio/" in file:
        return "asyncio (Python)"
    if file.endswith(("raw_client.py", "runner.py")):
        return "bench (raw client, runner)"
    return "stdlib " + Path(file).name


def _where(file: str, line: int, func: str) -> str:
    for cut in ("site-packages/", "python3.11/", "/work/main/"):
        if cut in file:
            file = file.split(cut, 1)[1]
    return f"{func}" if file == "~" else f"{file}:{line}({func})"


def load_profile(path: Path) -> tuple[pstats.Stats, dict[str, float], float]:
    stats = pstats.Stats(str(path))
    groups: dict[str, float] = defaultdict(float)
    for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        groups[layer(file, func)] += tt
    return stats, groups, sum(groups.values())


def print_top(stats: pstats.Stats, n: int, column: int, title: str, top: int = 25) -> None:
    """``column`` 2 = own time, 3 = cumulative. Coroutines count one call per resumption."""
    print(f"\n--- top {top} by {title} (ms per proxy; calls are per resumption for coroutines) ---")
    print(f"  {'calls':>8} {'own':>7} {'cum':>7}  function")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][column])[:top]
    for (file, line, func), (_cc, nc, tt, ct, _callers) in rows:
        print(f"  {nc:>8} {tt * 1000 / n:>7.3f} {ct * 1000 / n:>7.3f}  {_where(file, line, func)}")


def print_profiles(profiles: dict[str, Path], n: int) -> None:
    loaded = {kind: load_profile(path) for kind, path in profiles.items()}
    for kind, (_stats, _groups, total) in loaded.items():
        print(f"\ncProfile, {kind}, N={n}: {total:.2f} s profiled CPU = {total * 1000 / n:.2f} ms/proxy "
              f"(the profiler inflates Python-heavy code more than C)")
    if "suite" in loaded:
        stats = loaded["suite"][0]
        print_top(stats, n, 3, "cumulative time, suite")
        print_top(stats, n, 2, "own time, suite")
    names = sorted({g for _s, groups, _t in loaded.values() for g in groups},
                   key=lambda g: -max(groups.get(g, 0.0) for _s, groups, _t in loaded.values()))
    kinds = list(loaded)
    print("\n--- own time by layer, ms per proxy (share of that client's profiled total) ---")
    print(f"  {'layer':<28}" + "".join(f" {k:>16}" for k in kinds))
    for name in names[:20]:
        cells = []
        for k in kinds:
            _s, groups, total = loaded[k]
            tt = groups.get(name, 0.0)
            cells.append(f" {tt * 1000 / n:8.3f} ({100 * tt / total:4.1f}%)" if tt else f" {'-':>16}")
        print(f"  {name:<28}" + "".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See bench/README.md for what each column means.")
    p.add_argument("--proxies", type=int, nargs="+", default=[1000], metavar="N", help="proxy counts to run (default 1000)")
    p.add_argument("--concurrency", type=int, default=100, help="proxies checked at once, both clients (default 100)")
    p.add_argument("--repeat", type=int, default=1, help="runs per client and N; the verdict uses medians (default 1)")
    p.add_argument("--profile", action="store_true", help="also run each client once under cProfile at the largest N")
    p.add_argument("--port", type=int, default=23128, help="the port every squid listens on (default 23128)")
    p.add_argument("--no-count", action="store_true", help="no squid access log (no per-proxy connection counts)")
    p.add_argument("--no-pin", action="store_true", help="let the client share all CPUs with the judge and squids")
    p.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs, profiles)")
    args = p.parse_args(argv)
    if min(args.proxies) < 1 or args.concurrency < 1 or args.repeat < 1:
        p.error("--proxies, --concurrency and --repeat must be at least 1")

    try:
        import proxycheck  # noqa: F401 - the runner imports it; fail here with the fix, not in a child
        import trustme  # noqa: F401
    except ImportError as exc:
        p.error(f"{exc.name} is not importable by {sys.executable}: run with the project's venv, "
                f"e.g. /tmp/venv/bin/python bench/check_bench.py")
    world = World(max(args.proxies), port=args.port, count=not args.no_count, pin=not args.no_pin)
    where = (f"client on CPU {sorted(world.client_cpus)}, judge and squids on CPUs {sorted(world.world_cpus)}"
             if world.client_cpus else "no CPU pinning")
    print(f"world: 1 judge + {world.n_squids} squid(s) for up to {world.max_proxies} proxies; {where}; "
          f"work dir {world.workdir}", file=sys.stderr)
    runs: list[Run] = []
    try:
        with world:
            config = world.write_config(args.concurrency)
            for n in args.proxies:
                for _ in range(args.repeat):
                    for kind in ("raw", "suite"):
                        run = measure(world, kind, n, args.concurrency, config)
                        runs.append(run)
                        print(f"  {kind:<5} N={n}: {run.wall_s:.1f} s, {run.cpu_ms:.2f} CPU ms/proxy, "
                              f"{run.n - run.failed}/{run.n} healthy", file=sys.stderr)
            print()
            print_table(runs)
            print_verdict(runs)
            print_counts(runs)
            if args.profile:
                n = max(args.proxies)
                profiles = {kind: world.workdir / f"{kind}-{n}.prof" for kind in ("suite", "raw")}
                for kind, prof in profiles.items():
                    measure(world, kind, n, args.concurrency, config, profile=prof)
                print_profiles(profiles, n)
    except WorldError as exc:
        print(f"check_bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"work dir kept: {world.workdir}", file=sys.stderr)
        else:
            world.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
