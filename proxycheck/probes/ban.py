"""28: which ban targets treat the proxy's exit IP as banned?

Every ban target (``Targets.ban_targets``: the ``[[targets.ban]]`` tables, or ``ban_url`` as one
``recaptcha`` target) is fetched through the proxy, in order, and judged by its own rules
(``proxycheck.bans``: a preset per captcha provider, or the user's rules). The probe fails with
``banned`` (28) when *any* target bans the exit, naming each; its ``targets`` fact says, for
every target, whether it bans the exit and why, so a proxy banned by Cloudflare can still serve
reCAPTCHA (``CheckResult.usable_for``). A wire error on any fetch is the probe's verdict, as for
every probe (the proxy failed to fetch, which is not a ban).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..bans import PRESETS
from .base import Finding, ProbeContext, ProbeSpec, SelfTestContext, TargetCheck, fail, ok
from .selftest_fetch import fetch

BODY_LIMIT = 200_000  # characters of a page searched for ban phrases


def detect_ban(status: int, headers: Mapping[str, str], body: str) -> str | None:
    """The ``recaptcha`` preset's verdict (what the single ``ban_url`` always used)."""
    return PRESETS["recaptcha"].detect(status, headers, body)


FIX = "point [targets].ban_url (or this [[targets.ban]] url) at a reachable URL (a judge serves /recaptcha/api2/anchor)"


async def run(ctx: ProbeContext) -> Finding:
    exit_ip = ctx.facts.get("exit_ip") or "its exit IP"
    verdicts: dict[str, dict[str, object]] = {}
    for target in ctx.settings.targets.ban_targets:
        response = await ctx.http.get(target.url)
        ban = target.rules.detect(response.status, response.headers, response.text()[:BODY_LIMIT])
        if ban is None:
            verdicts[target.name] = {"banned": False, "detail": f"answered {response.status}: not banned"}
        else:
            verdicts[target.name] = {"banned": True, "detail": f"answered {ban}"}
    banned = [name for name, v in verdicts.items() if v["banned"]]
    if banned:
        named = "; ".join(f"{name} {verdicts[name]['detail']}" for name in banned)
        usable = [name for name in verdicts if name not in banned]
        still = f" (still usable for {', '.join(usable)})" if usable else ""
        return fail("banned", f"through {ctx.who} (exit {exit_ip}) banned by {named}{still}", targets=verdicts)
    if len(verdicts) == 1:
        return ok(f"the ban target answered {next(iter(verdicts.values()))['detail'].removeprefix('answered ')}",
                  targets=verdicts)
    return ok(f"no ban on {', '.join(verdicts)}", targets=verdicts)


async def selftest(st: SelfTestContext) -> list[TargetCheck]:
    """Every ban target, asked directly: it must answer (what it answers is the verdict's business)."""
    checks = []
    for target in st.settings.targets.ban_targets:
        key = target.config_key
        response = await fetch(st, key, target.url, FIX)
        if isinstance(response, TargetCheck):
            checks.append(response)
        else:
            checks.append(TargetCheck(key, target.url, True, f"{target.url} answered {response.status}"))
    return checks


SPEC = ProbeSpec("ban", run, targets=("ban_url", "ban"), summary=("targets",), selftest=selftest,
                 every=1800.0, jitter=0.2, rate_limited=True)
