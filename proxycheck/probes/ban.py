"""28: does the target treat the proxy's exit IP as banned?

Pure part: ``detect_ban`` recognises the ban pages captcha targets serve (see
../shared/research/captcha_services.md §4): HTTP 429; a redirect to Google's ``/sorry/``; a
403/503 page saying "unusual traffic" or "automated queries"; Cloudflare's
``cf-mitigated: challenge``. Anything else — including the target's own errors — is not a ban.
"""

from __future__ import annotations

from .base import Finding, ProbeContext, ProbeSpec, SelfTestContext, TargetCheck, fail, ok
from .selftest_fetch import fetch

BAN_PHRASES = ("unusual traffic", "automated queries", "sending automated", "/sorry/index")


def detect_ban(status: int, headers: dict[str, str], body: str) -> str | None:
    """A short description of the ban, or None. ``headers`` keys are lower-case."""
    if headers.get("cf-mitigated", "").lower() == "challenge":
        return f"a Cloudflare challenge (cf-mitigated: challenge, status {status})"
    location = headers.get("location", "")
    if 300 <= status < 400 and "/sorry/" in location:
        return f"a {status} redirect to {location.split('?')[0]}"
    lowered = body.lower()
    if status == 429:
        return "429 Too Many Requests" + (" (\"unusual traffic\" page)" if "unusual traffic" in lowered else "")
    if status in (403, 503) and any(p in lowered for p in BAN_PHRASES):
        return f"a {status} page saying \"unusual traffic\""
    return None


FIX = "point [targets].ban_url at a reachable URL (a judge serves /recaptcha/api2/anchor)"


async def run(ctx: ProbeContext) -> Finding:
    response = await ctx.http.get(ctx.settings.targets.ban_url)
    ban = detect_ban(response.status, response.headers, response.text()[:200_000])
    exit_ip = ctx.facts.get("exit_ip") or "its exit IP"
    if ban is not None:
        return fail("banned", f"through {ctx.who} (exit {exit_ip}) the ban target answered {ban}")
    return ok(f"the ban target answered {response.status}: not banned")


async def selftest(st: SelfTestContext) -> list[TargetCheck]:
    """The ban target, asked directly: it must answer (what it answers is the verdict's business)."""
    url = st.settings.targets.ban_url
    response = await fetch(st, "ban_url", url, FIX)
    if isinstance(response, TargetCheck):
        return [response]
    return [TargetCheck("ban_url", url, True, f"{url} answered {response.status}")]


SPEC = ProbeSpec("ban", run, targets=("ban_url",), selftest=selftest, every=1800.0, jitter=0.2, rate_limited=True)
