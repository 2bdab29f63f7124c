"""``daemon_bench.py --live``: the long-lived daemon's sustained checks/s against live proxies.

    unshare --net sh -c 'ip link set lo up && .venv/bin/python bench/daemon_bench.py --live --proxies 100000'

What is measured, exactly:

1. **Proxies.** N distinct proxy rows, proxy j at ``http://<address(j)>:<port + j mod S>``: every
   row has its own destination address (127.200.0.1, 127.200.0.2, ...), so the daemon's key
   (scheme, host, port) and every client->proxy 4-tuple are distinct. They are served by S squid
   processes (``--squids``) that listen on the wildcard address, squid K on ``port + K``: on
   Linux a wildcard listener accepts a connection to any 127.x.y.z. That is why the bench runs in
   a network namespace of its own (``unshare --net``, checked below): there the wildcard means
   loopback only, and no port of another job on the box can collide. Each squid leaves from
   127.42.K.250 and is configured as in ``world.py`` (check_bench's farm); the judge is
   ``world.py``'s. So every check is the full suite through a real squid to a real judge, and
   S processes stand for N proxies (782 squids of 128 ports each would not fit the box).
2. **"One core busy".** On a 2-CPU box the daemon is pinned to the last CPU and the world (judge
   and squids) to the others, so the world's CPU work (about 7 ms per check: README,
   "Reading the output") keeps the other core busy while the daemon has one core. Nothing stops
   other jobs on the box from running on either core; the CPUs' utilisation over the window is
   printed (/proc/stat), and so is the load average.
3. **The daemon** is the installed CLI, ``proxycheck run`` (long-lived, default ``[health]``
   intervals: 300 s), on a fresh SQLite database: ``db upgrade``, then ``run``, whose first sync
   imports the N rows. After READY and ``--warmup`` seconds, a window of ``--live-seconds``:
   checks stored (``checks.id`` advances, read every ``--sample`` s), the daemon's CPU (user+sys of
   its process, all threads: probes, dispatch, store writes, logging) from /proc, its RSS. Then
   SIGTERM; peak RSS from ``wait4``.
4. Figures: checks/s over the window (and min/max per sample interval), CPU ms per check
   (daemon CPU / checks stored in the window: dispatch included), the daemon's share of its core,
   codes of the window's checks (healthy should dominate), peak RSS.
5. ``--flap-seconds F`` (issue 16): after the window, quiet and flapping segments of
   ``--flap-segment`` seconds in turn (alternating cancels a shared box's drift: two quiet
   windows one after the other differ by up to 2x here), F seconds of flapping in all. While
   flapping, the judge dies for ``--flap-down`` seconds every ``--flap-every`` (± 0.5 s) seconds
   (by default 1.5 s of every 6 s, the issue's blinking judge): ``flapjudge.py`` closes its
   listeners and connections and opens them again on signals. Printed: checks/s quiet vs.
   flapping (goal: flapping >= 70 % of quiet) and the failures stored over the whole run. Every
   proxy is a healthy squid, so each stored failure (any code) is a healthy proxy blamed for our
   trouble: the goal is 0.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from world import child_cpu, squid_child, squid_conf

from proxycheck.world import Child, stop_all



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


def max_check_id(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT COALESCE(MAX(id), 0) FROM checks").fetchone()[0]
    finally:
        conn.close()


def codes_between(db: Path, lo: int, hi: int) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT COALESCE(code, 0), COUNT(*) FROM checks WHERE id > ? AND id <= ? GROUP BY 1", (lo, hi))
        return {("healthy" if c == 0 else str(c)): k for c, k in rows}
    finally:
        conn.close()


def run_live(world, args, helpers) -> list[str]:
    """``world``: daemon_bench.World with the judge started; ``helpers``: daemon_bench's module."""
    h = helpers
    why = in_private_netns()
    if why:
        raise SystemExit(why)
    n, s = args.proxies, args.squids
    cpus = sorted(os.sched_getaffinity(0))
    daemon_cpus, world_cpus = ({cpus[-1]}, set(cpus[:-1])) if len(cpus) >= 2 else (None, None)
    if world_cpus:
        os.sched_setaffinity(world.judge.proc.pid, world_cpus)
    workdir = world.workdir
    os.chmod(workdir, 0o777)  # squid drops privileges to `proxy` and writes its logs here
    port = args.live_port
    squids = start_squids(workdir, port, s, world_cpus)
    h.CHILDREN.extend(squids)
    deadline = time.monotonic() + 60
    for k in range(s):
        while h.refused(h.address(k), port + k):
            for sq in squids:
                sq.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"squid {k} does not accept on {h.address(k)}:{port + k}")
            time.sleep(0.1)
    csv = workdir / f"live-{n}.csv"
    with open(csv, "w") as fh:
        fh.write("type,address,port\n")
        fh.writelines(f"http,{h.address(j)},{port + j % s}\n" for j in range(n))
    db = workdir / "live.db"
    url = f"sqlite:///{db}"
    config = world.config("live", url, csv, daemon={"drain_grace": 10.0})
    h.run_cli(["db", "upgrade", "--config", str(config)], workdir / "live-upgrade.log", "db upgrade")

    flapper = JudgeFlapper(world, args.flap_every, args.flap_down, world_cpus, h) if args.flap_seconds > 0 else None
    log = workdir / "live-run.log"
    argv = [*h.proxycheck_cli(), "run", "--config", str(config)]
    if daemon_cpus:
        argv = ["taskset", "-c", ",".join(map(str, sorted(daemon_cpus))), *argv]
    child = h.Child("run (live)", argv, log).spawn()
    ready_at = child.wait_ready(poll=0.2)
    time.sleep(args.warmup)
    pid = child.proc.pid
    cpu0, load0 = cpu_times(), os.getloadavg()[0]
    squid_cpu0 = sum(child_cpu(sq) for sq in squids) + h.proc_cpu(world.judge.proc.pid)
    samples = sample_window(db, child, pid, args.live_seconds, args.sample, h)
    util = cpu_util(cpu0, cpu_times())
    world_cpu = sum(child_cpu(sq) for sq in squids) + h.proc_cpu(world.judge.proc.pid) - squid_cpu0
    rss_now = h.proc_rss_kb(pid) or 0
    segments = flapper.alternate(db, child, args.flap_seconds, args.flap_segment) if flapper else []
    rc = child.stop(grace=60)  # SIGTERM, then SIGKILL after 60 s
    stop_all(squids, grace=10)

    (t0, id0, c0), (t1, id1, c1) = samples[0], samples[-1]
    window, checks, cpu = t1 - t0, id1 - id0, c1 - c0
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:]) if b[0] > a[0]]
    codes = codes_between(db, id0, id1)
    healthy = codes.get("healthy", 0)
    text = log.read_text(errors="replace")
    errors = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line][:5]
    degraded = text.count("checker degraded, no proxy will be judged")
    out = [
        f"live daemon: N={n:,} distinct proxies on {s} squids (wildcard listeners, own netns), concurrency {args.concurrency}, "
        f"daemon on CPU {sorted(daemon_cpus) if daemon_cpus else 'any'}, world on CPU {sorted(world_cpus) if world_cpus else 'any'}",
        f"  READY after {ready_at:.1f} s; warm-up {args.warmup:g} s; window {window:.1f} s; load average at window start {load0:.1f}",
        f"  sustained: {checks:,} checks in {window:.1f} s = {checks / window:.1f} checks/s "
        f"(per {args.sample:g} s sample: min {min(rates, default=0):.1f}, max {max(rates, default=0):.1f})",
        f"  daemon CPU in window: {cpu:.2f} s = {100 * cpu / window:.0f}% of its core; "
        f"**{1000 * cpu / max(1, checks):.2f} ms CPU per check** (probes + dispatch + store)",
        f"  world (judge + squids) CPU in window: {world_cpu:.2f} s = {1000 * world_cpu / max(1, checks):.2f} ms per check",
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
        blamed = sum(k for c, k in codes_between(db, id0, segments[-1][3]).items() if c != "healthy")
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
    return out


def sample_window(db: Path, child, pid: int, seconds: float, every: float, h) -> list[tuple[float, int, float]]:
    """(monotonic, max check id, daemon CPU s) every ``every`` seconds for ``seconds``."""
    samples = []
    end = time.monotonic() + seconds
    while True:
        samples.append((time.monotonic(), max_check_id(db), h.proc_cpu(pid)))
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

    def alternate(self, db: Path, child, flap_seconds: float, segment: float) -> list[tuple[bool, float, int, int, int]]:
        """Quiet and flapping segments of ``segment`` s in turn until ``flap_seconds`` of flapping
        (alternating cancels the drift of a shared box); each (flapping?, seconds, first id, last id, outages)."""
        out = []
        for k in range(max(1, round(flap_seconds / segment))):
            for flapping in (False, True):
                t0, id0 = time.monotonic(), max_check_id(db)
                outages = self._flap(segment) if flapping else (time.sleep(segment) or 0)
                out.append((flapping, time.monotonic() - t0, id0, max_check_id(db), outages))
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

