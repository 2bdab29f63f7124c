"""Benchmark: requests and CPU per proxy-hour, every probe on every check vs. probe schedules.

    python bench/schedule_bench.py --proxies 200 --hours 2 [--interval 300] [--concurrency 100]

Brings up the bench world (world.py: a judge and squids on loopback), then runs the real
``Checker`` over N proxies once every ``--interval`` simulated seconds (default
``[health].interval``, 300) for ``--hours`` simulated hours, twice:

- ``before``: every check runs every probe (``Checker.check(proxy, own_ips)``, as before
  schedules, and as the one-shot ``check`` CLI still does);
- ``after``: each probe at its default schedule (``ProbeSpec.every``/``jitter``), its last result
  carried between runs exactly as the daemon carries it (``last=``, fed from what ran).

The simulated clock only decides which probes are due (``Checker.clock``): every check that
runs is real traffic through squid to the judge, as fast as the world answers. Measured, not
estimated: each request the checker sends is counted at the wire (``Session.get`` and the TCP
check, per ``[targets]`` key), squid 0's access log counts what arrived at a sample of proxies,
and CPU is this process's ``getrusage`` user+sys over the rounds (plus the judge's and squids').
Per proxy-hour = total / (N × hours). bench/README.md, "schedule_bench.py", has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from world import OWN_IP, World, WorldError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_mode(world: World, config: Path, mode: str, n: int, hours: float, interval: float, concurrency: int) -> dict:
    from proxycheck.checker import Checker
    from proxycheck.config import load_settings
    from proxycheck.proxy import parse_proxy_url
    from proxycheck.result import LastRun
    from proxycheck.wire import session as wire

    settings = load_settings(str(config))
    from proxycheck.probes import declared_targets

    by_url = {url.split("?")[0]: key_name  # probes add their own query (nonce, padding)
              for key_name in declared_targets() for url in settings.targets.urls(key_name)}
    sent: Counter[str] = Counter()
    real_get, real_tcp = wire.Session.get, wire.Session.tcp_check

    async def counted_get(self, url, **kw):  # counts every request the checker sends, by target
        sent[by_url.get(url.split("?")[0], url)] += 1
        return await real_get(self, url, **kw)

    async def counted_tcp(self):
        sent["tcp_connect"] += 1
        return await real_tcp(self)

    wire.Session.get, wire.Session.tcp_check = counted_get, counted_tcp
    checker = Checker(settings)
    proxies = [parse_proxy_url("http://" + a) for a in world.proxies(n)]
    last: dict[str, dict[str, LastRun]] = {p.key: {} for p in proxies}
    rounds = max(1, round(hours * 3600 / interval))
    unhealthy = 0
    ran: Counter[str] = Counter()

    async def one_round(now: datetime) -> None:
        checker.clock = lambda: now
        todo = iter(proxies)

        async def worker() -> None:
            nonlocal unhealthy
            for p in todo:
                r = await checker.check(p, frozenset({OWN_IP}), last=last[p.key] if mode == "after" else None)
                unhealthy += not r.healthy
                for o in r.probes:  # what the daemon's write-back stores (store/probe_results.py)
                    if not o.skipped and not o.carried:
                        last[p.key][o.name] = LastRun(o, r.started_at)
                        ran[o.name] += 1

        await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))

    async def all_rounds() -> None:
        for i in range(rounds):
            await one_round(T0 + timedelta(seconds=i * interval))

    mark = world.mark()
    c0, w0 = cpu(), time.perf_counter()
    try:
        asyncio.run(all_rounds())
    finally:
        wire.Session.get, wire.Session.tcp_check = real_get, real_tcp
    cpu_s, wall_s = cpu() - c0, time.perf_counter() - w0
    load, counts = world.since(mark, world.proxies(n))
    proxy_hours = n * rounds * interval / 3600
    return {"mode": mode, "rounds": rounds, "proxy_hours": proxy_hours, "wall_s": wall_s, "cpu_s": cpu_s,
            "sent": sent, "ran": ran, "unhealthy": unhealthy, "load": load, "counts": counts}


def report(runs: list[dict], n: int) -> None:
    from proxycheck.probes import declared_targets

    keys = ["tcp_connect", *(k for k in declared_targets() if any(r["sent"].get(k) for r in runs))]
    print(f"\nrequests per proxy-hour, counted at the wire (N = {n}):")
    print("| target | " + " | ".join(r["mode"] for r in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for k in keys + ["total"]:
        cells = []
        for r in runs:
            total = sum(r["sent"].values()) if k == "total" else r["sent"].get(k, 0)
            cells.append(f"{total / r['proxy_hours']:.1f}")
        print(f"| {k} | " + " | ".join(cells) + " |")
    print("\nper proxy-hour:")
    print("| mode | checks | probes run | requests | checker CPU ms | judge+squid CPU ms | squid 0 saw: GETs / CONNECTs | wall s | unhealthy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        ph = r["proxy_hours"]
        c = r["counts"]
        hours = ph / n  # simulated hours; squid's counts are per sampled proxy over the run
        seen = f"{c.forwarded / hours:.1f} / {c.tunnels / hours:.1f}" if c else "-"
        print(f"| {r['mode']} | {r['rounds'] * n / ph:.1f} | {sum(r['ran'].values()) / ph:.1f} | "
              f"{sum(r['sent'].values()) / ph:.1f} | {r['cpu_s'] * 1000 / ph:.1f} | "
              f"{(r['load']['judge_cpu'] + r['load']['squid_cpu']) * 1000 / ph:.1f} | {seen} | {r['wall_s']:.1f} | {r['unhealthy']} |")
    if len(runs) == 2:
        b, a = runs
        saved_req = 1 - (sum(a["sent"].values()) / a["proxy_hours"]) / (sum(b["sent"].values()) / b["proxy_hours"])
        saved_cpu = 1 - (a["cpu_s"] / a["proxy_hours"]) / (b["cpu_s"] / b["proxy_hours"])
        print(f"\nschedules save {saved_req:.0%} of the requests and {saved_cpu:.0%} of the checker's CPU per proxy-hour; "
              f"image requests {a['sent']['image_urls'] / a['proxy_hours']:.1f} vs {b['sent']['image_urls'] / b['proxy_hours']:.1f}, "
              f"ban requests {a['sent']['ban_url'] / a['proxy_hours']:.1f} vs {b['sent']['ban_url'] / b['proxy_hours']:.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--proxies", type=int, default=200, help="proxies (default 200)")
    p.add_argument("--hours", type=float, default=2.0, help="simulated hours (default 2)")
    p.add_argument("--interval", type=float, default=300.0, help="simulated seconds between checks (default 300)")
    p.add_argument("--concurrency", type=int, default=100, help="proxies checked at once (default 100)")
    p.add_argument("--port", type=int, default=23128, help="the port every squid listens on (default 23128)")
    args = p.parse_args(argv)
    world = World(args.proxies, port=args.port, count=True, pin=True)
    try:
        with world:
            if world.client_cpus:
                os.sched_setaffinity(0, world.client_cpus)
            config = world.write_config(args.concurrency)
            runs = []
            for mode in ("before", "after"):
                run = run_mode(world, config, mode, args.proxies, args.hours, args.interval, args.concurrency)
                print(f"  {mode}: {run['rounds']} rounds in {run['wall_s']:.1f} s, {run['cpu_s']:.2f} CPU s, "
                      f"{run['unhealthy']} unhealthy results", file=sys.stderr)
                runs.append(run)
            report(runs, args.proxies)
    except WorldError as exc:
        print(f"schedule_bench: {exc}", file=sys.stderr)
        return 2
    finally:
        world.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
