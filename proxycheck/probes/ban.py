"""28: which ban targets treat the proxy's exit IP as banned?

Every ban target (``Targets.ban_targets``: the ``[[targets.ban]]`` tables, or ``ban_url`` as one
``recaptcha`` target) is fetched through the proxy and judged by its own rules
(``proxycheck.bans``: a preset per captcha provider, or the user's rules). The probe fails with
``banned`` (28) when *any* target bans the exit, naming each; its ``targets`` fact says, for
every target, whether it bans the exit and why, so a proxy banned by Cloudflare can still serve
reCAPTCHA (``CheckResult.usable_for``). A wire error on any fetch is the probe's verdict, as for
every probe (the proxy failed to fetch, which is not a ban); with several, the first target's in
config order.

Deadline: the whole probe runs under the one ``[timeouts].probe``, so targets on distinct origins
are fetched *concurrently*, each origin over its own connection (the check's session for the origin
it already holds a connection to, else the first; a fresh session for each other one). One tunnel
per HTTPS origin per check still holds: distinct origins need their own tunnels anyway. The probe
then takes as long as its slowest origin, not the sum of all targets: five targets answering in
8 s each finish in ~8 s, within the default 25 s, where one after another they took 40 s and cost
the proxy a ``read_timeout`` (27). Targets sharing an origin share its connection, one after
another (a session serves one request at a time), so they still add up under the one deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..bans import BanTarget
from ..wire import Response, Session, parse_target
from ..target_spec import TargetSpec
from .base import Finding, ProbeContext, ProbeSpec, SelfTestContext, TargetCheck, fail, ok
from .selftest_fetch import fetch

BODY_LIMIT = 200_000
FIX_ALIKE = ("wait for the target to answer normally again, or point this [[targets.ban]] url at a page that "
             "does not ban the checker's own address")  # characters of a page searched for ban phrases

FIX = "point [targets].ban_url (or this [[targets.ban]] url) at a reachable URL (a judge serves /recaptcha/api2/anchor)"


async def run(ctx: ProbeContext) -> Finding:
    exit_ip = ctx.facts.get("exit_ip") or "its exit IP"
    targets = [t for t in ctx.settings.targets.ban_targets if t.name not in ctx.cannot_judge]
    responses = await _fetch_all(ctx.http, targets)
    verdicts: dict[str, dict[str, object]] = {}
    unsure = []
    for target in ctx.settings.targets.ban_targets:
        if target.name in ctx.cannot_judge:
            verdicts[target.name] = {"banned": None, "detail": f"unknown: {ctx.cannot_judge[target.name]}"}
            continue
        response = responses[target.name]
        ban = target.rules.detect(response.status, response.headers, response.text()[:BODY_LIMIT])
        if ban is not None:
            verdicts[target.name] = {"banned": True, "detail": f"answered {ban}"}
        elif response.status >= 500:  # the target's own error (or the proxy's): no verdict either way
            verdicts[target.name] = {"banned": None, "detail": f"unknown: answered {response.status}, an error, not a verdict"}
            unsure.append(target.name)
        else:
            verdicts[target.name] = {"banned": False, "detail": f"answered {response.status}: not banned"}
    banned = [name for name, v in verdicts.items() if v["banned"]]
    if banned:
        named = "; ".join(f"{name} {verdicts[name]['detail']}" for name in banned)
        usable = [name for name, v in verdicts.items() if v["banned"] is False]
        unknown = [name for name, v in verdicts.items() if v["banned"] is None]
        still = f" (still usable for {', '.join(usable)})" if usable else ""
        still += f" (unknown on {', '.join(unknown)}: cannot judge)" if unknown else ""
        return fail("banned", f"through {ctx.who} (exit {exit_ip}) banned by {named}{still}", targets=verdicts)
    extra = {"unsure": unsure} if unsure else {}  # the checker asks the target directly (checker.py rule 6)
    if len(verdicts) == 1:
        (only,) = verdicts.values()
        return ok(f"the ban target {str(only['detail']).removeprefix('answered ')}" if only["banned"] is None
                  else f"the ban target answered {str(only['detail']).removeprefix('answered ')}", targets=verdicts, **extra)
    unknown = [name for name, v in verdicts.items() if v["banned"] is None]
    known = [name for name in verdicts if name not in unknown]
    return ok(f"no ban on {', '.join(known) or 'any target'}" + (f"; unknown on {', '.join(unknown)}" if unknown else ""),
              targets=verdicts, **extra)


async def _fetch_all(http: Session, targets: Sequence[BanTarget]) -> dict[str, Response]:
    """Every target's response, by name: origins concurrently (the docstring's deadline rule).
    The extra sessions' phase timings are added to the check's session's, which the runner reports."""
    by_origin: dict[str, list[BanTarget]] = {}
    for target in targets:
        parts = parse_target(target.url)
        by_origin.setdefault(f"{parts.scheme}://{parts.origin}", []).append(target)
    groups = list(by_origin.values())
    # The check's session takes the origin it already holds a connection (a tunnel) to, if any.
    mine = next((i for i, group in enumerate(groups) if http.holds(group[0].url)), 0)
    sessions = [http if i == mine else Session(http.proxy, http.ssl_context, http.timeouts, http.user_agent)
                for i in range(len(groups))]
    extra = [s for s in sessions if s is not http]
    responses: dict[str, Response] = {}

    async def fetch_group(session: Session, group: list[BanTarget]) -> None:
        for target in group:
            responses[target.name] = await session.get(target.url)

    try:
        outcomes = await asyncio.gather(*(fetch_group(s, g) for s, g in zip(sessions, groups)),
                                        return_exceptions=True)
    finally:
        for session in extra:
            session.close()
            for phase, ms in session.timings.items():
                http.timings[phase] = http.timings.get(phase, 0.0) + ms
    for outcome in outcomes:  # groups follow config order: the first target's error is the verdict
        if isinstance(outcome, BaseException):
            raise outcome
    return responses


async def selftest(st: SelfTestContext) -> list[TargetCheck]:
    """Every ban target, asked directly: it must answer. One that answers *us* with a ban (by its
    own rules) or a 5xx cannot tell a banned exit from any other caller: it is up, but it cannot
    judge (``judges=False``), and its verdict is unknown for every proxy."""
    checks = []
    for target in st.settings.targets.ban_targets:
        key = target.config_key
        response = await fetch(st, key, target.url, FIX)
        if isinstance(response, TargetCheck):
            checks.append(response)
            continue
        ban = target.rules.detect(response.status, response.headers, response.text()[:BODY_LIMIT])
        alike = f"answered {ban}" if ban is not None else (f"answered {response.status}" if response.status >= 500 else None)
        if alike is None:
            checks.append(TargetCheck(key, target.url, True, f"{target.url} answered {response.status}",
                                      facts={"name": target.name}))
        else:
            checks.append(TargetCheck(
                key, target.url, True,
                f"ban target {target.name} cannot judge: it {alike} to our own direct request too, as it would to a "
                "banned exit, so its verdict is unknown for every proxy", FIX_ALIKE, facts={"name": target.name},
                judges=False))
    return checks


# Google's public test site key: a reCAPTCHA URL any IP may fetch unless Google bans it.
RECAPTCHA_ANCHOR = (
    "https://www.google.com/recaptcha/api2/anchor?ar=1&k=6LeIxAcTAAAAAJcZVRqyHh4o8iZ5XYZwTqXCDjR7T"
    "&co=aHR0cHM6Ly93d3cuZ29vZ2xlLmNvbTo0NDM.&hl=en&size=normal"
)
TARGETS = (
    TargetSpec("ban_url", RECAPTCHA_ANCHOR, "shorthand for one `recaptcha` ban target; not with [[targets.ban]]",
               offline=("{https}/recaptcha/api2/anchor",)),
    TargetSpec("ban", (), "ban targets, one [[targets.ban]] table each (keys below); none: the one `ban_url` target",
               tables=True),
)
SPEC = ProbeSpec("ban", run, targets=TARGETS, summary=("targets",), selftest=selftest,
                 every=1800.0, jitter=0.2, rate_limited=True)
