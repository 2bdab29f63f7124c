"""28: does the target treat the proxy's exit IP as banned?

Pure part: ``detect_ban`` recognises the ban pages captcha targets serve (see
../shared/research/captcha_services.md §4): HTTP 429; a redirect to Google's ``/sorry/``; a
403/503 page saying "unusual traffic" or "automated queries"; Cloudflare's
``cf-mitigated: challenge``. Anything else — including the target's own errors — is not a ban.
"""

from __future__ import annotations

from .base import Finding, ProbeContext, fail, ok

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


async def probe(ctx: ProbeContext) -> Finding:
    url = ctx.settings.targets.ban_url
    response = await ctx.client.get(url)
    body = (await response.aread())[:200_000].decode("utf-8", "replace")
    headers = {k.lower(): v for k, v in response.headers.items()}
    ban = detect_ban(response.status_code, headers, body)
    exit_ip = ctx.facts.get("exit_ip") or "its exit IP"
    if ban is not None:
        return fail("banned", f"through {ctx.who} (exit {exit_ip}) the ban target answered {ban}")
    return ok(f"the ban target answered {response.status_code}: not banned")
