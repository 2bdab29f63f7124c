"""Real proxy software for the world: how each daemon is configured and launched.

Rules:
1. Every proxy listens on its own 127.0.1.N and egresses from its own 127.0.2.N, so the judge
   sees the proxy's exit address and never the checker's (127.0.0.1).
2. squid carries several behaviours in one process, one per ``http_port ... name=X`` through
   ``myportname`` ACLs (auth, CONNECT refused, images refused, egress). ``forwarded_for``,
   ``via`` and ``request_header_max_size`` are global, so each value needs its own process.
3. Files live in the world's directory, which is world-writable: squid drops to ``proxy`` and
   tinyproxy to ``nobody`` when started as root.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from proxycheck.world import Child

SQUID = "/usr/sbin/squid"
SQUID_NCSA_AUTH = "/usr/lib/squid/basic_ncsa_auth"
TINYPROXY = "/usr/bin/tinyproxy"
MICROSOCKS = "/usr/bin/microsocks"


def missing_software() -> list[str]:
    """What the world needs and this machine lacks, each with the command that installs it."""
    missing = []
    for path, package in [(SQUID, "squid"), (SQUID_NCSA_AUTH, "squid"), (TINYPROXY, "tinyproxy"), (MICROSOCKS, "microsocks")]:
        if not Path(path).exists():
            missing.append(f"{path} (apt-get install {package})")
    if shutil.which("openssl") is None:
        missing.append("openssl (apt-get install openssl)")
    if importlib.util.find_spec("pproxy") is None:
        missing.append("pproxy (pip install pproxy)")
    return missing


@dataclass(frozen=True)
class SquidPort:
    name: str
    host: str
    port: int
    egress: str
    auth: bool = False
    deny_connect: bool = False
    deny_images: bool = False
    # Only this client address is let in (an IP-authorised proxy, vantage.py): others get 403, or
    # with ``auth`` a 407 unless they log in.
    allow_src: str | None = None


@dataclass(frozen=True)
class SquidInstance:
    name: str
    ports: tuple[SquidPort, ...]
    forwarded_for: str = "delete"
    via: bool = True
    elite: bool = False  # also strip every request header that shows a proxy is in the path
    request_header_max_size: str | None = None
    persistent: bool = True  # False: client_persistent_connections off (a reused connection is closed)


def write_htpasswd(path: Path, user: str, password: str) -> None:
    hashed = subprocess.run(
        ["openssl", "passwd", "-apr1", password], check=True, capture_output=True, text=True
    ).stdout.strip()
    path.write_text(f"{user}:{hashed}\n")
    path.chmod(0o644)


def squid_conf(inst: SquidInstance, workdir: Path, htpasswd: Path) -> str:
    lines = [f"# squid for the proxycheck test world: {inst.name}"]
    for p in inst.ports:
        lines += [f"http_port {p.host}:{p.port} name={p.name}", f"acl port_{p.name} myportname {p.name}"]
    if any(p.auth for p in inst.ports):
        lines += [
            f"auth_param basic program {SQUID_NCSA_AUTH} {htpasswd}",
            "auth_param basic children 2 startup=1",
            "auth_param basic realm proxycheck-world",
            "acl authenticated proxy_auth REQUIRED",
        ]
    lines += ["acl CONNECT method CONNECT", "acl image rep_mime_type -i ^image/"]
    # No Safe_ports/SSL_ports: the judge's HTTPS port is not 443 and CONNECT must reach it.
    for p in inst.ports:
        if p.deny_connect:
            lines.append(f"http_access deny port_{p.name} CONNECT")
        if p.allow_src:
            lines += [f"acl src_{p.name} src {p.allow_src}", f"http_access allow port_{p.name} src_{p.name}"]
            if not p.auth:
                lines.append(f"http_access deny port_{p.name}")
        if p.auth:
            lines.append(f"http_access allow port_{p.name} authenticated")
            lines.append(f"http_access deny port_{p.name}")  # -> 407 with a challenge
        else:
            lines.append(f"http_access allow port_{p.name}")
    lines.append("http_access deny all")
    for p in inst.ports:
        if p.deny_images:
            lines.append(f"http_reply_access deny port_{p.name} image")  # -> 403 ERR_ACCESS_DENIED
    lines.append("http_reply_access allow all")
    # Applies to CONNECT tunnels too: the ban probe's HTTPS fetch leaves from the same address.
    lines += [f"tcp_outgoing_address {p.egress} port_{p.name}" for p in inst.ports]
    lines += [f"forwarded_for {inst.forwarded_for}", f"via {'on' if inst.via else 'off'}"]
    if inst.elite:
        for header in ("Via", "X-Forwarded-For", "Forwarded", "Cache-Control"):
            # Cache-Control: squid adds "max-age=259200" (its refresh_pattern maximum), a fingerprint.
            lines.append(f"request_header_access {header} deny all")
    if inst.request_header_max_size:
        lines.append(f"request_header_max_size {inst.request_header_max_size}")
    if not inst.persistent:
        lines.append("client_persistent_connections off")
    lines += [
        "visible_hostname proxycheck-world",
        "cache deny all",
        "cache_mem 8 MB",
        "shutdown_lifetime 0 seconds",
        "pinger_enable off",
        "dns_nameservers 127.0.0.1",  # never used: every world URL is an IP literal
        f"pid_filename {workdir}/{inst.name}.pid",
        f"cache_log {workdir}/{inst.name}-cache.log",
        f"access_log stdio:{workdir}/{inst.name}-access.log",
        f"coredump_dir {workdir}",
    ]
    return "\n".join(lines) + "\n"


def squid(inst: SquidInstance, workdir: Path, htpasswd: Path) -> Child:
    conf = workdir / f"{inst.name}.conf"
    conf.write_text(squid_conf(inst, workdir, htpasswd))
    return Child(
        name=inst.name,
        argv=[SQUID, "-N", "-f", str(conf)],
        log=workdir / f"{inst.name}.out",
        listens=[(p.host, p.port) for p in inst.ports],
        extra_logs=[workdir / f"{inst.name}-cache.log"],
    )


def tinyproxy(name: str, host: str, port: int, egress: str, workdir: Path, extra: list[str]) -> Child:
    conf = workdir / f"{name}.conf"
    log = workdir / f"{name}.log"
    conf.write_text(
        "\n".join(
            [
                f"Port {port}",
                f"Listen {host}",
                f"Bind {egress}",
                "User nobody",
                "Group nogroup",
                "Timeout 30",
                "MaxClients 50",
                "LogLevel Info",
                f'LogFile "{log}"',
                f'PidFile "{workdir}/{name}.pid"',
                *extra,
            ]
        )
        + "\n"
    )
    return Child(name, [TINYPROXY, "-d", "-c", str(conf)], workdir / f"{name}.out", [(host, port)], [log])


def microsocks(name: str, host: str, port: int, egress: str, workdir: Path, auth: tuple[str, str] | None = None) -> Child:
    argv = [MICROSOCKS, "-i", host, "-p", str(port), "-b", egress]
    if auth is not None:
        argv += ["-u", auth[0], "-P", auth[1]]
    return Child(name, argv, workdir / f"{name}.out", [(host, port)])


def pproxy(name: str, scheme: str, host: str, port: int, egress: str, workdir: Path) -> Child:
    # "/@ADDR" after the listen URI binds pproxy's outgoing connections to ADDR.
    listen = f"{scheme}://{host}:{port}/@{egress}"
    # pproxy switches to uvloop whenever it can import it (we depend on uvloop), and its main() then
    # fails with uvloop >= 0.21, which creates no implicit event loop: run it on asyncio's own loop.
    start = "import sys; sys.modules['uvloop'] = None; from pproxy.server import main; main()"
    return Child(name, [sys.executable, "-c", start, "-l", listen], workdir / f"{name}.out", [(host, port)])

