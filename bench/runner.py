"""One measured client run, in a child process: ``python bench/runner.py suite|raw SPEC.json``.

Rules:
1. Imports, settings, the proxy list and the SSL context are ready before the clock starts; the
   measured window is exactly "check every proxy" (for the suite ``Checker.check_many``, whose
   one preflight is included).
2. CPU is ``getrusage(RUSAGE_SELF)`` user+sys over that window: every thread of this process
   (the getaddrinfo executor too), nothing of the judge or squid. Memory is VmRSS just before the
   window and VmHWM (peak RSS) after it. Time in the cyclic GC is clocked by generation.
3. The answer is one JSON line on stdout; the parent adds the whole process's rusage (wait4).
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import sys
import time
from pathlib import Path


def vm(field: str) -> int:
    """A /proc/self/status memory figure in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class GcClock:
    """Wall time spent in the cyclic garbage collector (CPU-bound, so ~CPU), by generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.runs[info["generation"]] += 1


def prepare_suite(spec: dict):
    import anyio._backends._asyncio  # noqa: F401 - imported lazily on first use; not part of the window

    from proxycheck.checker import Checker
    from proxycheck.config import load_settings
    from proxycheck.proxy import parse_proxy_url

    checker = Checker(load_settings(spec["config"]))
    proxies = [parse_proxy_url("http://" + a) for a in spec["proxies"]]

    async def run() -> list[str]:
        bad: list[str] = []

        def note(r) -> None:  # streamed, not kept: memory must stay flat in N
            if not r.healthy:
                bad.append(f"{r.proxy.address}: {r.probe} {r.reason}: {r.detail}")

        rnd = await checker.check_many(proxies, concurrency=spec["concurrency"], on_result=note, keep_results=False)
        if rnd.checker_unavailable:
            return [f"checker unavailable: {rnd.status.reason}"] * len(proxies)
        return bad

    return run


def prepare_raw(spec: dict):
    import raw_client

    targets = raw_client.Targets.from_toml(spec["config"])
    ctx = raw_client.ssl_context(targets.ca_file)
    own = frozenset(spec["own_ips"])

    async def run() -> list[str]:
        results = await raw_client.check_many(spec["proxies"], targets, ctx, spec["concurrency"], own)
        return [f"{address}: {why}" for address, why in results if why is not None]

    return run


def main(kind: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    run = {"suite": prepare_suite, "raw": prepare_raw}[kind](spec)
    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    gc.collect()
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    rss_before = vm("VmRSS")
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if profiler:
        profiler.enable()
    failures = asyncio.run(run())
    if profiler:
        profiler.disable()
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    gc.callbacks.remove(gc_clock)
    if profiler:
        profiler.dump_stats(spec["profile"])
    print(json.dumps({
        "kind": kind, "n": len(spec["proxies"]), "concurrency": spec["concurrency"], "wall_s": wall,
        "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
        "rss_before_kb": rss_before, "hwm_kb": vm("VmHWM"), "gc_s": gc_clock.seconds, "gc_runs": gc_clock.runs,
        "failed": len(failures), "failures": failures[:20],
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
