"""Is the checker itself able to judge proxies? Asked directly, with no proxy in the way.

Rules:
1. Never blame a proxy for our own trouble. Before (and after) a round, every target the
   registered probes declare (``probes.REGISTRY``) is asked directly what its probe will ask it
   through a proxy (each spec's ``selftest``: the judge must echo our nonce, images must be
   intact images, the long GET must get 200...). If one fails, the round is
   ``checker_unavailable`` with the reason and no proxy's state changes.
2. A target that is down while another does its job (a second judge) does not degrade the
   checker (``TargetCheck.needed``); nor does a ban target that answers us as it would a banned
   exit (``TargetCheck.judges``): its verdict is unknown for every proxy. Both are the status's
   ``warnings``, which status, doctor, /healthz and the page show.
3. The self-test also learns the checker's own IPs, the addresses a transparent proxy would
   leak: what the IP echo (``[targets].ip_url``, the one target no probe uses) and the judge see
   when we call them directly, plus the local source address the kernel picks towards each target.
4. It uses the probes' own wire (``proxycheck.wire``) with no proxy: same request bytes, same
   TLS context, same deadlines.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from . import probes
from .config import Settings
from .probes.base import SelfTestContext, TargetCheck
from .probes.selftest_fetch import fetch
from .wire import Session, Timeouts

FIX_IP = "point [targets].ip_url at an IP echo (a judge serves /ip: `proxycheck judge --listen 0.0.0.0:8080`)"


@dataclass(frozen=True)
class CheckerStatus:
    ok: bool
    reason: str = ""
    own_ips: frozenset[str] = field(default_factory=frozenset)
    checks: tuple[TargetCheck, ...] = field(default=(), compare=False)  # one per target, for doctor

    @property
    def state(self) -> str:
        return "ok" if self.ok else "degraded"

    @property
    def judges(self) -> tuple[str, ...]:
        """The judges that answered, in config order: the anonymity probe asks the first."""
        return judges_up(self.checks)

    @property
    def cannot_judge(self) -> dict[str, str]:
        return cannot_judge(self.checks)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Targets that are down or cannot judge while the checker is still OK (a spare judge, a
        ban target that bans us too): what status, doctor, /healthz and the page name."""
        return tuple(f"{c.key}: {c.found}" for c in self.checks if (not c.ok and not c.needed) or not c.judges)


def judges_up(checks: tuple[TargetCheck, ...] | list[TargetCheck]) -> tuple[str, ...]:
    return tuple(c.facts["judge"] for c in checks if c.ok and "judge" in c.facts)


def cannot_judge(checks: tuple[TargetCheck, ...] | list[TargetCheck]) -> dict[str, str]:
    """Ban target name -> why it cannot judge (it answers our direct request as a banned exit's)."""
    return {c.facts["name"]: c.found for c in checks if not c.judges and "name" in c.facts}


def parse_ip_echo(body: str) -> str:
    """``{"origin": "1.2.3.4"}``, ``{"ip": "1.2.3.4"}`` or plain ``1.2.3.4``; ValueError otherwise."""
    text = body.strip()
    if text.startswith("{"):
        data = json.loads(text)
        text = str(data.get("ip") or data.get("origin") or "")
    text = text.split(",")[-1].strip()
    return str(ipaddress.ip_address(text))


def local_source_ips(urls: list[str]) -> set[str]:
    """The source address the kernel would use towards each URL's host (no packet is sent)."""
    found = set()
    for url in urls:
        host = urlsplit(url).hostname
        if not host:
            continue
        try:
            infos = socket.getaddrinfo(host, 80, type=socket.SOCK_DGRAM)
        except OSError:
            continue
        for family, _, _, _, addr in infos[:1]:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                try:
                    s.connect(addr)
                    found.add(s.getsockname()[0])
                except OSError:
                    continue
    return found


def direct_session(settings: Settings, ssl_context: ssl.SSLContext) -> Session:
    t = settings.timeouts
    return Session(None, ssl_context, Timeouts(t.connect, t.read), settings.probes.user_agent)


async def _ip_echo(st: SelfTestContext) -> list[TargetCheck]:
    url = st.settings.targets.ip_url
    response = await fetch(st, "ip_url", url, FIX_IP)
    if isinstance(response, TargetCheck):
        return [response]
    try:
        ip = parse_ip_echo(response.text())
    except ValueError:
        return [TargetCheck("ip_url", url, False, f"{url} answered {response.status} without an IP address in it", FIX_IP)]
    return [TargetCheck("ip_url", url, True, f"{url} says our IP is {ip}", facts={"ip": ip})]


async def run_selftest(settings: Settings, ssl_context: ssl.SSLContext) -> tuple[TargetCheck, ...]:
    """Every registered probe's self-test and the IP echo, concurrently, each on its own direct
    session (a session is one check's connections and serves one request at a time); in
    registry order, the IP echo last."""

    async def one(ask) -> list[TargetCheck]:
        async with direct_session(settings, ssl_context) as session:
            return await ask(SelfTestContext(settings, session))

    asks = [spec.selftest for spec in probes.REGISTRY if spec.selftest is not None]
    found = await asyncio.gather(*(one(ask) for ask in [*asks, _ip_echo]))
    return tuple(c for checks in found for c in checks)


async def preflight(settings: Settings, ssl_context: ssl.SSLContext) -> CheckerStatus:
    checks = await run_selftest(settings, ssl_context)
    bad = next((c for c in checks if not c.ok and c.needed), None)
    if bad is not None:
        return CheckerStatus(False, f"{bad.key}: {bad.found}", checks=checks)
    own: set[str] = set()
    for c in checks:
        own.update(ip for ip in [c.facts.get("ip"), *c.facts.get("origin", ())] if ip and _is_ip(ip))
    urls = [c.url for c in checks]
    own.update(await asyncio.to_thread(local_source_ips, urls))
    return CheckerStatus(True, "", frozenset(own), checks=checks)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
