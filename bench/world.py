"""The bench's loopback world: a trustme CA, one judge process and ceil(N/128) squid processes.

Rules:
1. Everything runs as our direct child, with its files in one private temp dir (mode 0777:
   squid drops privileges to ``proxy`` and must write its cache.log and pid file there). We stop
   exactly the PIDs we started: SIGTERM, then SIGKILL after a grace period.
2. Squid K listens on 127.42.K.1 ... 127.42.K.128, all on one port (squid takes at most 128
   ``http_port`` lines), and leaves from 127.42.K.250. So the client->proxy 4-tuples spread over
   many destination addresses, the squid->judge ones over one source address per squid, and the
   judge never sees 127.0.0.1, the checker's own address (it would grade every proxy
   transparent). Proxy J lives on squid J mod S, so any prefix of the list uses every squid.
3. Counting is passive and only on a sample: squid 0 alone writes an access log, with the
   client's source port (so TCP connections can be told apart) and the bytes each way (so the
   traffic inside the encrypted tunnels can be compared); ``Counts`` reads what a run added.
   The judge runs without ``--verbose-requests``: its log filter costs O(n^2) CPU in the length
   of a line, ~50 ms per long-GET line (README, "Findings"), which would make it the bottleneck.
4. With ``pin`` (and 2+ CPUs) the judge and squids share all CPUs but the last, which is left to
   the measured client (``client_cpus``): the client's CPU time is then not inflated by sharing a
   core, and its wall time shows whether it or the world is the bottleneck.
"""

from __future__ import annotations

import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from proxycheck.config_targets import judge_targets as config_judge_targets
from proxycheck.config_targets import targets_toml

SQUID = "/usr/sbin/squid"
PORTS_PER_SQUID = 128  # squid refuses more http_port lines per instance
NET = "127.42"  # proxies on 127.42.K.1-128, squid K's outgoing address 127.42.K.250
JUDGE_HOST = "127.0.0.2"
OWN_IP = "127.0.0.1"  # what the kernel picks as source towards 127.0.0.2: the checker's own IP
SQUID_NOFILE = 16384

_SQUID_LOG_RE = re.compile(r"^\S+ (?P<client>\S+) (?P<cport>\d+) (?P<local>\S+) (?P<lport>\d+) (?P<method>\S+) (?P<url>\S+) "
                           r"(?P<status>\d+) (?P<up>\d+) (?P<down>\d+)$")


class WorldError(RuntimeError):
    """The bench world could not be built; the message says which part and why."""


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join("    " + x for x in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"    ({path} missing)"


def cpu_seconds(pid: int) -> float:
    """user+sys of a live process from /proc (judge and squid are not measured, only shown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listen_drops() -> int:
    """System-wide TcpExt ListenDrops: SYNs dropped because an accept queue was full."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:])).get("ListenDrops", 0))
    return 0


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    extra_log: Path | None = None
    raise_nofile: bool = False
    cpus: set[int] | None = None  # CPU affinity (rule 4)
    proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        def preexec() -> None:
            if self.cpus:
                os.sched_setaffinity(0, self.cpus)
            if self.raise_nofile:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(SQUID_NOFILE, hard), hard))

        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.log.parent, preexec_fn=preexec)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            logs = tail(self.log) + ("\n" + tail(self.extra_log) if self.extra_log else "")
            raise WorldError(f"{self.name} exited with status {self.proc.returncode}:\n{logs}")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc and self.proc.poll() is None else 0.0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)  # our own child, by PID
            except ProcessLookupError:
                pass

    def reap(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)
            self.proc.wait(timeout=5)


def squid_conf(index: int, port: int, count: int, workdir: Path, access_log: bool) -> str:
    listens = "\n".join(f"http_port {NET}.{index}.{i + 1}:{port}" for i in range(count))
    log = (f"logformat bench %ts.%03tu %>a %>p %>la %>lp %rm %ru %>Hs %>st %<st\n"
           f"access_log stdio:{workdir}/access-{index}.log bench") if access_log else "access_log none"
    return f"""{listens}
acl bench_src src 127.0.0.0/8
http_access allow bench_src
http_access deny all
forwarded_for delete
cache deny all
cache_mem 0 MB
{log}
cache_log {workdir}/cache-{index}.log
pid_filename {workdir}/squid-{index}.pid
coredump_dir {workdir}
tcp_outgoing_address {NET}.{index}.250
visible_hostname bench-squid-{index}
pinger_enable off
shutdown_lifetime 0 seconds
workers 1
max_filedescriptors {SQUID_NOFILE}
"""


@dataclass
class Counts:
    """What squid 0 saw of its own proxies during one run, per proxy."""

    sample: int  # proxies of squid 0 in this run
    connections: float  # distinct client (address, port) pairs, including request-less ones
    forwarded: float  # plain-HTTP requests squid forwarded
    forwarded_bytes: tuple[float, float]  # (client -> squid, squid -> client) of those
    tunnels: float  # CONNECT tunnels (each carries exactly one TLS handshake here)
    tunnel_bytes: tuple[float, float]  # (client -> squid, squid -> client) through the tunnels

    def row(self) -> str:
        (fu, fd), (tu, td) = self.forwarded_bytes, self.tunnel_bytes
        return (f"{self.connections:4.2f} TCP conns, {self.forwarded:4.2f} forwarded GETs ({fu:5.0f} B up, {fd:6.0f} B down), "
                f"{self.tunnels:4.2f} CONNECT tunnels ({tu:5.0f} B up, {td:6.0f} B down)")


@dataclass
class World:
    max_proxies: int
    port: int = 23128
    count: bool = True
    pin: bool = True
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="proxycheck-bench-")))
    children: list[Child] = field(default_factory=list)
    judge: Child | None = None
    squids: list[Child] = field(default_factory=list)
    targets: dict = field(default_factory=dict)

    @property
    def world_cpus(self) -> set[int] | None:
        cpus = sorted(os.sched_getaffinity(0))
        return set(cpus[:-1]) if self.pin and len(cpus) >= 2 else None

    @property
    def client_cpus(self) -> set[int] | None:
        cpus = sorted(os.sched_getaffinity(0))
        return {cpus[-1]} if self.pin and len(cpus) >= 2 else None

    @property
    def n_squids(self) -> int:
        return math.ceil(self.max_proxies / PORTS_PER_SQUID)

    def proxies(self, n: int) -> list[str]:
        """The first ``n`` proxies as ``host:port``, round-robin over the squids (rule 2)."""
        s = self.n_squids
        return [f"{NET}.{j % s}.{j // s + 1}:{self.port}" for j in range(n)]

    # -- start / stop ----------------------------------------------------------------------------
    def __enter__(self) -> World:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if not os.access(SQUID, os.X_OK):
            raise WorldError(f"{SQUID} is missing: install squid (Debian: apt-get install squid)")
        os.chmod(self.workdir, 0o777)
        self._check_ports_free()
        ca, cert, key = self._certs()
        http_port, tls_port = free_port(JUDGE_HOST), free_port(JUDGE_HOST)
        plain, tls = f"http://{JUDGE_HOST}:{http_port}", f"https://{JUDGE_HOST}:{tls_port}"
        self.targets = judge_targets(plain, tls, ca)
        self.judge = Child("judge", [*proxycheck_cli(), "judge", "--listen", f"{JUDGE_HOST}:{http_port}",
                                     "--tls-listen", f"{JUDGE_HOST}:{tls_port}", "--cert", str(cert), "--key", str(key)],
                           self.workdir / "judge.log", cpus=self.world_cpus)
        self.children.append(self.judge)
        per = [len(range(k, self.max_proxies, self.n_squids)) for k in range(self.n_squids)]
        for k, count in enumerate(per):
            conf = self.workdir / f"squid-{k}.conf"
            conf.write_text(squid_conf(k, self.port, count, self.workdir, access_log=self.count and k == 0))
            squid = Child(f"squid {k}", [SQUID, "-N", "-f", str(conf)], self.workdir / f"squid-{k}.out",
                          self.workdir / f"cache-{k}.log", raise_nofile=True, cpus=self.world_cpus)
            self.squids.append(squid)
            self.children.append(squid)
        for child in self.children:
            child.spawn()
        self._wait_ready([(JUDGE_HOST, http_port), (JUDGE_HOST, tls_port)] +
                         [(h, int(p)) for h, p in (a.split(":") for a in self.proxies(self.max_proxies))])

    def _check_ports_free(self) -> None:
        for address in self.proxies(self.max_proxies):
            host, port = address.split(":")
            with socket.socket() as s:
                try:
                    s.bind((host, int(port)))
                except OSError as exc:
                    raise WorldError(f"cannot bind {address} ({exc.strerror}): is another bench running? "
                                     f"choose another --port") from None

    def _certs(self) -> tuple[Path, Path, Path]:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(JUDGE_HOST)
        paths = self.workdir / "ca.pem", self.workdir / "judge-chain.pem", self.workdir / "judge-key.pem"
        ca.cert_pem.write_to_path(str(paths[0]))
        cert.private_key_pem.write_to_path(str(paths[2]))
        with open(paths[1], "wb") as fh:
            for blob in cert.cert_chain_pems:
                fh.write(blob.bytes())
        return paths

    def _wait_ready(self, addresses: list[tuple[str, int]], budget: float = 60.0) -> None:
        deadline = time.monotonic() + budget
        pending = list(addresses)
        while pending:
            for child in self.children:
                child.check_alive()
            if accepts(*pending[0]):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise WorldError(f"nothing accepts on {pending[0][0]}:{pending[0][1]} after {budget:g} s "
                                 f"({len(pending)} addresses pending); logs in {self.workdir}")
            time.sleep(0.05)

    def stop(self, grace: float = 5.0) -> None:
        for child in self.children:
            child.stop()
        deadline = time.monotonic() + grace
        for child in self.children:
            child.reap(deadline)

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the config both clients read --------------------------------------------------------------
    def write_config(self, concurrency: int) -> Path:
        lines = [targets_toml(self.targets), "[timeouts]", "connect = 5.0", "read = 10.0", "probe = 25.0",
                  "", "[check]", f"concurrency = {concurrency}", ""]
        path = self.workdir / "proxycheck.toml"
        path.write_text("\n".join(lines))
        return path

    # -- measuring around a run ----------------------------------------------------------------------
    def mark(self) -> dict:
        return {
            "judge_cpu": self.judge.cpu() if self.judge else 0.0,
            "squid_cpu": sum(s.cpu() for s in self.squids),
            "listen_drops": listen_drops(),
            "squid_log": _size(self.workdir / "access-0.log"),
        }

    def since(self, mark: dict, proxies: list[str]) -> tuple[dict, Counts | None]:
        for child in self.children:
            child.check_alive()
        now = self.mark()
        load = {k: now[k] - mark[k] for k in ("judge_cpu", "squid_cpu", "listen_drops")}
        if not self.count:
            return load, None
        time.sleep(0.3)  # squid logs a CONNECT when the tunnel closes; let the last ones land
        sample = {p for p in proxies if p.startswith(f"{NET}.0.")}
        conns: set[tuple[str, str]] = set()
        methods: Counter[str] = Counter()
        up: Counter[str] = Counter()
        down: Counter[str] = Counter()
        for line in _read_from(self.workdir / "access-0.log", mark["squid_log"]):
            m = _SQUID_LOG_RE.match(line)
            if m and f"{m['local']}:{m['lport']}" in sample:
                conns.add((m["client"], m["cport"]))
                methods[m["method"]] += 1
                up[m["method"]] += int(m["up"])
                down[m["method"]] += int(m["down"])
        n = max(1, len(sample))
        return load, Counts(len(sample), len(conns) / n, methods["GET"] / n, (up["GET"] / n, down["GET"] / n),
                            methods["CONNECT"] / n, (up["CONNECT"] / n, down["CONNECT"] / n))


def judge_targets(plain: str, tls: str, ca_file: str | Path) -> dict[str, object]:
    """The ``[targets]`` table for a bench judge serving plain HTTP at ``plain`` and TLS at ``tls``:
    the registry's (``proxycheck.config.judge_targets``), with a query on the TLS image and the ban
    target as the benches have always fetched them (the figures stay comparable)."""
    t = config_judge_targets(plain, tls, ca_file)
    t["image_urls"] = [t["image_urls"][0], *(f"{u}?over=tls" for u in t["image_urls"][1:])]
    t["ban_url"] += "?k=bench"
    return t


def proxycheck_cli() -> list[str]:
    """The installed ``proxycheck`` script next to this interpreter, else the module's ``main``."""
    script = Path(sys.executable).parent / "proxycheck"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from proxycheck.cli import main; sys.argv[0] = 'proxycheck'; main()"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
