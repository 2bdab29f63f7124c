"""Is the checker itself able to judge proxies? Checked directly, with no proxy in the way.

Rule: never blame a proxy for our own trouble. Before (and after) a round the judge and every
target are fetched directly; if one is unreachable the round is ``checker_unavailable`` with the
reason, and no proxy's state changes. This also learns the checker's own IPs — the addresses a
transparent proxy would leak: what the IP echo and the judge see when we call them directly,
plus the local source address the kernel picks towards each target.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from .config import Settings
from .probes.anonymity import parse_judge_answer
from .probes.classify import _chain
from .transport import direct_client


@dataclass(frozen=True)
class CheckerStatus:
    ok: bool
    reason: str = ""
    own_ips: frozenset[str] = field(default_factory=frozenset)

    @property
    def state(self) -> str:
        return "ok" if self.ok else "degraded"


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


def _why(exc: BaseException) -> str:
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"certificate does not verify ({e.verify_message}); set [targets].ca_file?"
        if isinstance(e, OSError) and e.strerror:
            return e.strerror
        if isinstance(e, httpx.TimeoutException):
            return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def preflight(settings: Settings, ssl_context: ssl.SSLContext) -> CheckerStatus:
    t = settings.targets
    async with direct_client(settings, ssl_context) as client:

        async def fetch(url: str) -> httpx.Response:
            response = await client.get(url)
            await response.aread()
            return response

        urls = [t.judge_url, t.ip_url, t.ssl_url, t.long_get_url, t.ban_url, *t.image_urls]
        answers = await asyncio.gather(*(fetch(u) for u in urls), return_exceptions=True)
    for url, answer in zip(urls, answers):
        if isinstance(answer, BaseException):
            if isinstance(answer, asyncio.CancelledError):
                raise answer
            return CheckerStatus(False, f"cannot reach {url} directly: {_why(answer)}")
    judge, ip_echo = answers[0], answers[1]
    if judge.status_code != 200:
        return CheckerStatus(False, f"judge {t.judge_url} answered {judge.status_code} directly")
    try:
        answer = parse_judge_answer(judge.text, judge.headers.get("content-type", ""))
        own = {parse_ip_echo(ip_echo.text)}
    except ValueError as exc:
        return CheckerStatus(False, f"judge or IP echo gave an unusable answer: {exc}")
    own.update(o for o in answer.origin if _is_ip(o))
    own.update(await asyncio.to_thread(local_source_ips, urls))
    return CheckerStatus(True, "", frozenset(own))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
