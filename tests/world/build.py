"""The world: one judge, real proxy software and fault servers on loopback, as a table.

Rules:
1. Addresses tell who is who. The checker is 127.0.0.1, the judge 127.0.0.2 (HTTP and HTTPS,
   certificate from a trustme CA), proxy slot N listens on 127.0.1.N and leaves from
   127.0.2.N. The judge bans exactly the exit of the "banned" slot (Google's /sorry/ on the
   recaptcha target), and the "turnstile-banned" slot's exit on the Turnstile-like target only.
   The config has one ban target per preset (``proxycheck.bans.PRESETS``), each at the judge's
   stand-in for that provider (``judge.PRESET_ROUTES``).
2. ``EXPECTATIONS`` is the table checker tests parametrize over; it is known at import time
   (no process started), and each row becomes a ``WorldProxy`` with a real URL on start.
3. Ports are picked at start-up (port 0 or a free one), so two sessions can share a machine.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from proxycheck.config import judge_targets_toml
from proxycheck.judge import PRESET_ROUTES, Judge, JudgeOptions

from . import faults, software
from .procs import Daemon, free_port, stop_all, wait_all

CHECKER_IP = "127.0.0.1"
JUDGE_HOST = "127.0.0.2"
STARTUP_BUDGET = 8.0  # seconds for every daemon to accept connections
SQUID_USER = ("squiduser", "right-pass")
SOCKS_USER = ("socksuser", "right-pass")
WRONG_PASSWORD = "wrong-pass"


def listen_ip(slot: int) -> str:
    return f"127.0.1.{slot}"


def egress_ip(slot: int) -> str:
    return f"127.0.2.{slot}"


@dataclass(frozen=True)
class Expectation:
    """One row: what a correct checker says about the proxy in ``slot``."""

    name: str
    slot: int
    expected_code: int | None  # anti-captcha error id; None = healthy
    expected_reason_hint: str | None  # a key of proxycheck.verdict.REASONS
    note: str
    anonymity: str | None = None  # for healthy proxies: "elite" or "anonymous"
    credentials: str = ""  # "right", "wrong" or "" (none sent)


BANNED_SLOT = 6
TURNSTILE_BANNED_SLOT = 13
ROTATING_SLOT = 26  # faults.RotatingExit: leaves from 127.0.2.26, then 127.0.3.26, then again...
ROTATING_EGRESSES = (f"127.0.2.{ROTATING_SLOT}", f"127.0.3.{ROTATING_SLOT}")

EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("squid-anonymous", 1, None, None, "squid, forwarded_for delete, via on", "anonymous"),
    Expectation("squid-elite", 2, None, None, "squid, via off, Via/X-Forwarded-For/Forwarded/Cache-Control stripped", "elite"),
    Expectation("squid-auth-right-password", 3, None, None, "squid basic auth (basic_ncsa_auth)", "anonymous", "right"),
    Expectation("squid-auth-wrong-password", 3, 49, "auth_rejected", "same squid port, wrong password: 407", credentials="wrong"),
    Expectation("squid-auth-no-credentials", 3, 49, "auth_required", "same squid port, no credentials: 407"),
    Expectation("squid-no-images", 4, 35, "image_blocked", "http_reply_access deny image/*: the plain-HTTP PNG gets 403 (the HTTPS one passes through CONNECT)"),
    Expectation("squid-no-connect", 5, 36, "connect_rejected", "http_access deny CONNECT: 403 to CONNECT"),
    Expectation("squid-banned-exit", BANNED_SLOT, 28, "banned", "exit address is in the judge's ban_ips: 302 to /sorry/"),
    Expectation("squid-turnstile-banned", TURNSTILE_BANNED_SLOT, 28, "banned",
                "challenged by the Turnstile-like target only (403 cf-mitigated): usable for the other targets"),
    Expectation("squid-forwarded-for", 7, 29, "ip_leaked", "forwarded_for on: X-Forwarded-For: 127.0.0.1"),
    Expectation("squid-short-headers", 8, 36, "long_get_rejected", "request_header_max_size 1 KB: a 2 KB GET gets 431"),
    Expectation("tinyproxy-xtinyproxy", 9, 29, "ip_leaked", "XTinyproxy Yes: X-Tinyproxy: 127.0.0.1"),
    Expectation("tinyproxy-anonymous", 14, None, None,
                "tinyproxy Anonymous header list: no keep-alive to clients, a reused connection is closed unanswered",
                "anonymous"),
    Expectation("squid-no-persistent", 15, None, None,
                "squid client_persistent_connections off: closes each client connection after one answer", "anonymous"),
    Expectation("microsocks", 10, None, None, "SOCKS5 without auth", "elite"),
    Expectation("microsocks-auth-right-password", 11, None, None, "SOCKS5 username/password", "elite", "right"),
    Expectation("microsocks-auth-wrong-password", 11, 49, "auth_rejected", "same SOCKS5 port, wrong password", credentials="wrong"),
    Expectation("pproxy-socks4", 12, None, None, "pproxy SOCKS4", "elite"),
    Expectation("refused", 20, 25, "connect_refused", "port bound but not listening: RST"),
    Expectation("blackhole", 21, 26, "connect_timeout", "accept queue full: SYNs dropped"),
    Expectation("silent-http", 22, 27, "read_timeout", "HTTP proxy that accepts and never answers"),
    Expectation("silent-socks5", 23, 27, "handshake_timeout", "SOCKS5 proxy that never answers the greeting"),
    Expectation("socks4-ident-rejected", 24, 49, "ident_rejected", "SOCKS4 reply 0x5D to every request"),
    Expectation("tls-interceptor", 25, 36, "tls_intercepted", "forwards plain HTTP, answers CONNECT with its own untrusted certificate"),
)



@dataclass(frozen=True)
class Slot:
    """What listens on 127.0.1.N: its proxy scheme, its login, and whether it reaches the judge."""

    scheme: str
    credentials: tuple[str, str] | None = None
    reaches_judge: bool = True


SLOTS: dict[int, Slot] = {
    1: Slot("http"),  # squid-main, port "anonymous"
    2: Slot("http"),  # squid-elite
    3: Slot("http", credentials=SQUID_USER),  # squid-main, port "auth"
    4: Slot("http"),  # squid-main, port "noimages"
    5: Slot("http"),  # squid-main, port "noconnect"
    BANNED_SLOT: Slot("http"),  # squid-main, port "banned"
    TURNSTILE_BANNED_SLOT: Slot("http"),  # squid-main, port "turnstile"
    7: Slot("http"),  # squid-forwarded-for
    8: Slot("http"),  # squid-short-headers
    9: Slot("http"),  # tinyproxy
    14: Slot("http"),  # tinyproxy-anonymous
    15: Slot("http"),  # squid-no-persistent
    10: Slot("socks5"),  # microsocks
    11: Slot("socks5", credentials=SOCKS_USER),  # microsocks -u -P
    12: Slot("socks4"),  # pproxy
    20: Slot("http", reaches_judge=False),  # faults.RefusedPort
    21: Slot("http", reaches_judge=False),  # faults.Blackhole
    22: Slot("http", reaches_judge=False),  # faults.SilentServer
    23: Slot("socks5", reaches_judge=False),  # faults.SilentServer
    24: Slot("socks4", reaches_judge=False),  # faults.Socks4IdentRejected
    25: Slot("http"),  # faults.TlsInterceptor (plain HTTP is forwarded honestly)
}


@dataclass(frozen=True)
class WorldProxy:
    name: str
    url: str  # full proxy URL, credentials included
    expected_code: int | None
    expected_reason_hint: str | None
    note: str
    anonymity: str | None = None
    egress: str | None = None  # the address the judge sees when this proxy reaches it


@dataclass
class World:
    judge: Judge
    ca_file: Path
    config_path: Path
    fixtures: list[WorldProxy]
    workdir: Path
    startup_seconds: float
    _stack: contextlib.ExitStack = field(repr=False)
    # Outside the table (its exit IP changes when a test says so): faults.RotatingExit, and its URL.
    rotating_exit: faults.RotatingExit | None = None
    rotating_url: str = ""

    def by_name(self, name: str) -> WorldProxy:
        for proxy in self.fixtures:
            if proxy.name == name:
                return proxy
        raise KeyError(f"no world proxy named {name!r}; known: {', '.join(p.name for p in self.fixtures)}")

    def stop(self) -> None:
        """Stop every process and server (by PID, children reaped), then remove the directory."""
        self._stack.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_world() -> World:
    """Start everything, or stop whatever did start and raise ``WorldError`` with the logs."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="proxycheck-world-"))
    workdir.chmod(0o777)  # squid runs as proxy, tinyproxy as nobody
    stack = contextlib.ExitStack()
    try:
        ca = trustme.CA(organization_name="proxycheck world")
        ca_file, cert_file = workdir / "ca.pem", workdir / "judge.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        ca.issue_cert(JUDGE_HOST).private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        judge = Judge(
            JudgeOptions(
                listen=(JUDGE_HOST, 0),
                tls_listen=(JUDGE_HOST, 0),
                cert_file=str(cert_file),
                key_file=str(cert_file),
                ban_ips=frozenset({egress_ip(BANNED_SLOT)}),
                ban_mode="sorry",
                target_bans=(("turnstile", frozenset({egress_ip(TURNSTILE_BANNED_SLOT)})),),
            )
        ).start()
        stack.callback(judge.stop)

        fault_servers = {
            20: faults.RefusedPort(listen_ip(20)),
            21: faults.Blackhole(listen_ip(21)),
            22: faults.SilentServer(listen_ip(22)),
            23: faults.SilentServer(listen_ip(23)),
            24: faults.Socks4IdentRejected(listen_ip(24)),
            25: faults.TlsInterceptor(listen_ip(25), egress_ip(25)),
            ROTATING_SLOT: faults.RotatingExit(listen_ip(ROTATING_SLOT), ROTATING_EGRESSES),
        }
        ports = {slot: free_port(listen_ip(slot)) for slot in SLOTS if slot not in fault_servers}
        daemons = _daemons(workdir, ports)
        stack.callback(stop_all, daemons)
        for daemon in daemons:
            daemon.spawn()  # they boot while the fault servers start
        for slot, server in fault_servers.items():
            server.start()
            stack.callback(server.stop)
            ports[slot] = server.port
        wait_all(daemons, STARTUP_BUDGET)

        fixtures = [_proxy(row, ports[row.slot]) for row in EXPECTATIONS]
        config_path = workdir / "proxycheck.toml"
        config_path.write_text(config_toml(judge, ca_file))
    except BaseException:
        stack.close()  # the work directory stays: the error names log files in it
        raise
    rotating = fault_servers[ROTATING_SLOT]
    return World(judge, ca_file, config_path, fixtures, workdir, time.monotonic() - started, stack,
                 rotating_exit=rotating, rotating_url=f"http://{listen_ip(ROTATING_SLOT)}:{rotating.port}")


def _daemons(workdir: Path, ports: dict[int, int]) -> list[Daemon]:
    htpasswd = workdir / "htpasswd"
    software.write_htpasswd(htpasswd, *SQUID_USER)

    def port(slot: int, name: str, **behaviour: bool) -> software.SquidPort:
        return software.SquidPort(name, listen_ip(slot), ports[slot], egress_ip(slot), **behaviour)

    main = software.SquidInstance(
        "squid-main",
        (
            port(1, "anonymous"),
            port(3, "auth", auth=True),
            port(4, "noimages", deny_images=True),
            port(5, "noconnect", deny_connect=True),
            port(BANNED_SLOT, "banned"),
            port(TURNSTILE_BANNED_SLOT, "turnstile"),
        ),
    )
    elite = software.SquidInstance("squid-elite", (port(2, "elite"),), via=False, elite=True)
    leaky = software.SquidInstance("squid-forwarded-for", (port(7, "forwardedfor"),), forwarded_for="on")
    short = software.SquidInstance("squid-short-headers", (port(8, "short"),), request_header_max_size="1 KB")
    oneshot = software.SquidInstance("squid-no-persistent", (port(15, "nopersistent"),), persistent=False)
    return [
        *(software.squid(inst, workdir, htpasswd) for inst in (main, elite, leaky, short, oneshot)),
        software.tinyproxy("tinyproxy-xtinyproxy", listen_ip(9), ports[9], egress_ip(9), workdir, ["XTinyproxy Yes"]),
        software.tinyproxy("tinyproxy-anonymous", listen_ip(14), ports[14], egress_ip(14), workdir,
                           [f'Anonymous "{header}"' for header in ("Host", "Authorization", "Cookie")]),
        software.microsocks("microsocks", listen_ip(10), ports[10], egress_ip(10), workdir),
        software.microsocks("microsocks-auth", listen_ip(11), ports[11], egress_ip(11), workdir, auth=SOCKS_USER),
        software.pproxy("pproxy-socks4", "socks4", listen_ip(12), ports[12], egress_ip(12), workdir),
    ]


def _proxy(row: Expectation, port: int) -> WorldProxy:
    slot = SLOTS[row.slot]
    userinfo = ""
    if row.credentials:
        assert slot.credentials is not None, f"{row.name}: slot {row.slot} has no login"
        user, password = slot.credentials
        userinfo = f"{user}:{password if row.credentials == 'right' else WRONG_PASSWORD}@"
    url = f"{slot.scheme}://{userinfo}{listen_ip(row.slot)}:{port}"
    egress = egress_ip(row.slot) if slot.reaches_judge else None
    return WorldProxy(row.name, url, row.expected_code, row.expected_reason_hint, row.note, row.anonymity, egress)


def config_toml(judge: Judge, ca_file: Path) -> str:
    """A proxycheck config pointing every target at this world's judge."""
    http, https = judge.http_url, judge.https_url
    return "\n".join(
        [
            "# proxycheck configuration for the loopback test world (tests/world)",
            judge_targets_toml(http, https, ca_file, ban_presets=PRESET_ROUTES),
            "[timeouts]",
            "connect = 1.0",
            "read = 2.0",
            "probe = 4.0",
            "",
        ]
    )
