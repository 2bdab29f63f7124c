"""29: does the proxy reveal the checker's own IP? Also: 49 on a forwarded GET, and the exit IP.

The probe GETs the plain-HTTP judge through the proxy (plain HTTP, because through a CONNECT
tunnel a proxy cannot add headers) and reads back what the judge received. Pure part:
``parse_judge_answer`` (httpbin ``/get`` JSON or classic azenv text) and ``grade`` (the rules):

- transparent: one of our own IPs appears in any request header the judge saw, or as the
  origin the judge saw. Only this fails (anti-captcha 29).
- anonymous:   no own IP, but a header says a proxy is in the way (Via, X-Forwarded-For, ...).
- elite:       neither.
A gateway whose exit IP differs from its listening address is fine: only *our* IPs count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import itertools
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..target_spec import TargetSpec
from .base import Finding, ProbeContext, ProbeSpec, SelfTestContext, TargetCheck, fail, ok
from .selftest_fetch import fetch

# Headers through which proxies reveal themselves or the client (lower-case).
PROXY_HEADERS = (
    "via", "x-forwarded-for", "forwarded", "x-real-ip", "client-ip", "true-client-ip", "x-client-ip",
    "x-tinyproxy", "x-proxy-id", "x-originating-ip", "x-remote-ip", "x-remote-addr", "proxy-connection",
    "x-cluster-client-ip", "x-forwarded", "forwarded-for", "x-forwarded-host", "x-forwarded-server",
    "x-proxyuser-ip", "wl-proxy-client-ip", "proxy-client-ip", "cf-connecting-ip", "fastly-client-ip",
    "x-bluecoat-via", "x-host", "xroxy-connection", "proxy-agent",
)
_IP_TOKEN = re.compile(r"[0-9A-Fa-f:.]{2,}")
NONCE_PARAM = "proxycheck"


@dataclass(frozen=True)
class JudgeAnswer:
    headers: dict[str, str]  # lower-case name -> value
    origin: list[str]  # the address(es) the judge saw, first = leftmost
    text: str  # the raw answer, for the nonce check


@dataclass(frozen=True)
class Grade:
    level: str  # transparent / anonymous / elite
    leaks: tuple[tuple[str, str], ...]  # (header or "origin", value) that carry an own IP
    reveals: tuple[str, ...]  # proxy headers present
    exit_ip: str | None


def parse_judge_answer(body: str, content_type: str = "") -> JudgeAnswer:
    """Read an httpbin-style JSON answer or an azenv text/HTML page; ValueError if neither."""
    stripped = body.lstrip()
    if "json" in content_type or stripped.startswith("{"):
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"judge answer is not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or not isinstance(data.get("headers"), dict):
            raise ValueError("judge JSON has no 'headers' object (httpbin /get format expected)")
        headers = {str(k).lower(): str(v) for k, v in data["headers"].items()}
        origin = [o.strip() for o in str(data.get("origin", "")).split(",") if o.strip()]
        return JudgeAnswer(headers, origin, body)
    return _parse_azenv(body)


def _parse_azenv(body: str) -> JudgeAnswer:
    text = html.unescape(re.sub(r"<[^>]+>", "\n", body))
    env: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        name = name.strip()
        if sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            env[name] = value.strip()
    if "REMOTE_ADDR" not in env:
        raise ValueError("judge answer is neither httpbin JSON nor an azenv page (no REMOTE_ADDR)")
    headers = {k[5:].lower().replace("_", "-"): v for k, v in env.items() if k.startswith("HTTP_")}
    return JudgeAnswer(headers, [env["REMOTE_ADDR"]], body)


@lru_cache(maxsize=4096)
def _ips_in(value: str) -> frozenset[str]:
    """The addresses written in one header value. Cached: the same values (``Via``, the judge's
    own headers, the checker's IP) come back on every check, and parsing costs exceptions."""
    found = set()
    for token in _IP_TOKEN.findall(value):
        if "." not in token and ":" not in token:
            continue  # hex-looking words ("deflate", "cafe"): no address has neither dot nor colon
        token = token.strip(".:")
        for candidate in (token, token.rsplit(":", 1)[0]):  # "1.2.3.4:5678" carries a port
            try:
                found.add(str(ipaddress.ip_address(candidate)))
                break
            except ValueError:
                continue
    return frozenset(found)


@lru_cache(maxsize=16)
def _normalised(own_ips: frozenset[str]) -> frozenset[str]:
    """The checker's own IPs in canonical text form (one set per round, so parsed once)."""
    return frozenset(str(ipaddress.ip_address(ip)) for ip in own_ips)


def grade(answer: JudgeAnswer, own_ips: frozenset[str]) -> Grade:
    own = _normalised(own_ips)
    leaks: list[tuple[str, str]] = []
    for name, value in sorted(answer.headers.items()):
        if _ips_in(value) & own:
            leaks.append((name, value))
    for origin in answer.origin:
        if _ips_in(origin) & own:
            leaks.append(("origin", origin))
    reveals = tuple(h for h in PROXY_HEADERS if h in answer.headers)
    exit_ip = answer.origin[-1] if answer.origin else None
    level = "transparent" if leaks else ("anonymous" if reveals else "elite")
    return Grade(level, tuple(leaks), reveals, exit_ip)


_NONCE_KEY = secrets.token_bytes(16)
_nonce_count = itertools.count()


def new_nonce() -> str:
    """16 hex digits no proxy can predict or replay: a keyed BLAKE2b of a counter. Not
    ``secrets.token_hex`` per request: its getrandom() call lets go of the GIL, and the event
    loop then waits for the daemon's storage threads to hand it back (py-spy on the live bench:
    2.4 % of the daemon's samples)."""
    return hashlib.blake2b(next(_nonce_count).to_bytes(8, "big"), key=_NONCE_KEY, digest_size=8).hexdigest()


def with_nonce(url: str, nonce: str) -> str:
    parts = urlsplit(url)
    query = (parts.query + "&" if parts.query else "") + urlencode({NONCE_PARAM: nonce})
    return urlunsplit(parts._replace(query=query))


def _header_title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


FIX = "point [targets].judge_url at a reachable judge: `proxycheck judge --listen 0.0.0.0:8080`"
FIX_ECHO = ("point [targets].judge_url at an endpoint that echoes the query string (httpbin's /get, a judge's /get "
            "or /azenv: `proxycheck judge --listen 0.0.0.0:8080`)")


async def run(ctx: ProbeContext) -> Finding:
    nonce = new_nonce()
    url = with_nonce((ctx.judges or ctx.settings.targets.judges)[0], nonce)  # the first judge that answers us
    response = await ctx.http.get(url)
    if response.status != 200:
        return fail("request_rejected", f"{ctx.who} answered {response.status} {response.reason} to GET {url.split('?')[0]}")
    try:
        answer = parse_judge_answer(response.text(), response.headers.get("content-type", ""))
    except ValueError as exc:
        return fail("bad_response", f"{ctx.who} returned something that is not the judge's answer: {exc}")
    if nonce not in answer.text:
        return fail("bad_response", f"{ctx.who} returned a page without our request's nonce: a cached or substituted answer")
    g = grade(answer, ctx.own_ips)
    facts = {"exit_ip": g.exit_ip, "anonymity": g.level, "reveals": list(g.reveals)}
    ctx.facts.update(facts)
    if g.leaks:
        name, value = g.leaks[0]
        if name == "origin":
            what = f"the judge saw the request come from {value}, our own address"
        else:
            what = f"added {_header_title(name)}: {value} (our address)"
        return fail("ip_leaked", f"{ctx.who} {what}", **facts)
    shown = ", ".join(_header_title(h) for h in g.reveals)
    return ok(f"{g.level}: exit IP {g.exit_ip}" + (f"; reveals a proxy via {shown}" if shown else ""), **facts)


async def selftest(st: SelfTestContext) -> list[TargetCheck]:
    """Every judge, asked directly what ``run`` asks it. While one judge passes, the others'
    failures are not ``needed``: the checker asks the one that is up (``ProbeContext.judges``)."""
    judges = st.settings.targets.judges
    keys = ["judge_url"] if not st.settings.targets.judge_urls else [f"judge_urls[{i}]" for i in range(len(judges))]
    checks = [await _ask_judge(st, key, base) for key, base in zip(keys, judges)]
    if any(c.ok for c in checks):
        checks = [c if c.ok else dataclasses.replace(c, needed=False) for c in checks]
    return checks


async def _ask_judge(st: SelfTestContext, key: str, base: str) -> TargetCheck:
    """One judge: a GET with a nonce in the query string, which must come back in the answer
    (httpbin's /headers, for one, does not echo the query, and every proxy would then fail with 36)."""
    nonce = new_nonce()
    response = await fetch(st, key, with_nonce(base, nonce), FIX, shown=base)
    if isinstance(response, TargetCheck):
        return response
    if response.status != 200:
        return TargetCheck(key, base, False, f"{base} answered {response.status}, not a judge's 200", FIX)
    try:
        seen = parse_judge_answer(response.text(), response.headers.get("content-type", ""))
    except ValueError as exc:
        return TargetCheck(key, base, False, f"{base} is not a judge: {exc}", FIX)
    if nonce not in seen.text:
        return TargetCheck(key, base, False,
                           f"{base} does not echo the query string (our nonce was not in its answer), "
                           "so every proxy would fail with 36", FIX_ECHO)
    return TargetCheck(key, base, True, f"{base} is a judge (it saw us as {', '.join(seen.origin) or 'unknown'})",
                       facts={"origin": seen.origin, "judge": base})


JUDGES = (
    TargetSpec("judge_url", "http://httpbin.org/get", "plain-HTTP header echo (httpbin /get JSON or azenv text); "
               "shorthand for one judge, not with judge_urls", ("http",), offline=("{http}/get",), example=""),
    TargetSpec("judge_urls", (), "judges, in order of preference: the anonymity probe asks the first one that answers "
               "the checker, and the checker is degraded only when none does (empty: the one `judge_url`)", ("http",),
               example=("http://httpbin.org/get", "http://httpbingo.org/get")),
)
SPEC = ProbeSpec("anonymity", run, targets=JUDGES, summary=("exit_ip", "anonymity", "latency_ms", "detail"),
                 selftest=selftest)
