"""Ban targets: where a proxy's exit IP may be banned, and how each target says so. Pure.

Rules:
1. A ban target is a name, a URL and ``BanRules``. The rules come from a ``preset`` (one per
   captcha provider, below) or are the user's own (``[[targets.ban]]`` with ``status``,
   ``redirect``, ``headers``, ``phrases``, ``phrase_status``), never both.
2. An answer is a ban when *any* rule matches: its status is one of ``status``; a 3xx whose
   ``Location`` contains one of ``redirect``; a header equal to a ``headers`` entry (a bare name
   matches any value); a body phrase (case-insensitive), counted only when the status is one of
   ``phrase_status`` (any status when that is empty). Anything else, including the target's own
   errors, is not a ban: a ban is what a provider serves to IPs it distrusts, nothing more.
3. ``[targets].ban_url`` is shorthand for one ``recaptcha`` target named ``recaptcha``.

Where the presets come from: docs/ban-presets.md, "Where the presets come from", with the
providers' own pages and the public reports behind each rule. A rule marked [inferred] is not
documented by the provider and was not seen in a captured answer; it is our reading of what
clients report, and that page says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class BanRules:
    status: frozenset[int] = frozenset()
    redirect: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case name, lower-case value or "" for any)
    phrases: tuple[str, ...] = ()  # lower-case
    phrase_status: frozenset[int] = frozenset()  # empty: phrases count on any status

    def detect(self, status: int, headers: Mapping[str, str], body: str) -> str | None:
        """Why this answer is a ban, or None (rule 2). ``headers`` keys are lower-case."""
        for name, value in self.headers:
            got = headers.get(name)
            if got is not None and (not value or got.strip().lower() == value):
                return f"{status} with {name}: {got.strip()}"
        location = headers.get("location", "")
        if 300 <= status < 400:
            hit = next((r for r in self.redirect if r in location), None)
            if hit is not None:
                return f"a {status} redirect to {location.split('?')[0]}"
        if status in self.status:
            return f"status {status}"
        if self.phrases and (not self.phrase_status or status in self.phrase_status):
            lowered = body.lower()
            hit = next((p for p in self.phrases if p in lowered), None)
            if hit is not None:
                return f"a {status} page saying {hit!r}"
        return None

    @property
    def empty(self) -> bool:
        return not (self.status or self.redirect or self.headers or self.phrases)


_GOOGLE_PHRASES = ("unusual traffic", "automated queries", "/sorry/index")
_CLOUDFLARE_CHALLENGE = (("cf-mitigated", "challenge"),)  # Cloudflare's documented marker

PRESETS: dict[str, BanRules] = {
    # Google's 429, the redirect to /sorry/, the 403/503 "unusual traffic" page. The
    # widget's own "Try again later" (rc-doscaptcha) is drawn after a JS round trip, so an HTTP
    # probe sees it rarely [inferred]. cf-mitigated is kept from the single-ban_url days, when a
    # page embedding reCAPTCHA behind Cloudflare was a common ban_url.
    "recaptcha": BanRules(
        status=frozenset({429}), redirect=("/sorry/",), headers=_CLOUDFLARE_CHALLENGE,
        phrases=(*_GOOGLE_PHRASES, "rc-doscaptcha"), phrase_status=frozenset({200, 403, 503}),
    ),
    # /search answers 302 to /sorry/index, or the sorry page itself with 429, 503 (2017
    # reports) or 403 "automated queries" (2016).
    "google_search": BanRules(
        status=frozenset({429, 503}), redirect=("/sorry/",), phrases=_GOOGLE_PHRASES,
        phrase_status=frozenset({200, 403}),
    ),
    # widgets report "rate limited" and "too many recent requests"; checksiteconfig answers
    # JSON with "pass": true when fine. Exact banned bodies were not found: 429/403 and
    # "pass": false are [inferred].
    "hcaptcha": BanRules(
        status=frozenset({403, 429}),
        phrases=("rate limited", "too many recent requests", '"pass":false', '"pass": false'),
    ),
    # cf-mitigated: challenge is Cloudflare's documented marker (403, or 429 under Super Bot
    # Fight Mode); the body markers are what FlareSolverr and others look for. Error 1020/1015
    # pages are [inferred].
    "turnstile": BanRules(
        headers=_CLOUDFLARE_CHALLENGE,
        phrases=("just a moment...", "_cf_chl_opt", "/cdn-cgi/challenge-platform/", "cf-challenge-running",
                 "error code: 1020", "error code: 1015"),
        phrase_status=frozenset({403, 429, 503}),
    ),
    # Arkose Labs (FunCaptcha): nothing documented or captured; 403/429, a
    # Cloudflare challenge in front of its API and "access denied"/"too many requests" bodies are
    # all [inferred].
    "funcaptcha": BanRules(
        status=frozenset({403, 429}), headers=_CLOUDFLARE_CHALLENGE,
        phrases=("access denied", "too many requests"),
    ),
}

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

# The [[targets.ban]] keys, for the config reference: (key, allowed, meaning).
ENTRY_KEYS: tuple[tuple[str, str, str], ...] = (
    ("name", "lower-case letters, digits, _ and -, up to 32", "what results, `usable_for` and `?target=` call it; unique"),
    ("url", "http:// or https:// URL", "the page fetched through each proxy"),
    ("preset", "one of " + ", ".join(PRESETS), "the provider's ban answers (docs/ban-presets.md); or give own rules"),
    ("status", "list of HTTP statuses", "own rule: any of these statuses is a ban"),
    ("redirect", "list of strings", "own rule: a 3xx whose Location contains one of these is a ban"),
    ("headers", 'list of "name: value" (or "name")', "own rule: this header (with this value) is a ban"),
    ("phrases", "list of strings", "own rule: the body contains one (case-insensitive)..."),
    ("phrase_status", "list of HTTP statuses", "...counted only on these statuses (empty: any)"),
)


@dataclass(frozen=True)
class BanTarget:
    name: str
    url: str
    rules: BanRules
    preset: str | None = None
    key: str = ""  # the config key the self-test names: "ban_url" or "ban[NAME]"

    @property
    def config_key(self) -> str:
        return self.key or f"ban[{self.name}]"


def from_ban_url(url: str) -> BanTarget:
    """``[targets].ban_url``: one ``recaptcha`` target (rule 3)."""
    return BanTarget("recaptcha", url, PRESETS["recaptcha"], "recaptcha", key="ban_url")


def parse_entries(value: Any, where: str, check_url: Any) -> tuple[BanTarget, ...]:
    """``[[targets.ban]]`` as read from TOML; ``ConfigError`` naming ``where[i].key`` otherwise.
    ``check_url`` is the config's URL check (returns a problem or None)."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: expected [[targets.ban]] tables (name, url, preset or rules)")
    targets: list[BanTarget] = []
    for i, entry in enumerate(value):
        at = f"{where}[{i}]"
        known = {k for k, _, _ in ENTRY_KEYS}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(f"{at}: unknown key {unknown[0]!r} (known: {', '.join(k for k, _, _ in ENTRY_KEYS)})")
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{at}.name: expected lower-case letters, digits, _ and - (up to 32), got {name!r}")
        if any(t.name == name for t in targets):
            raise ConfigError(f"{at}.name: {name!r} is used twice; names must be unique")
        url = entry.get("url")
        problem = "expected a string" if not isinstance(url, str) else check_url(url)
        if problem:
            raise ConfigError(f"{at}.url: {problem}")
        own = _own_rules(entry, at)
        preset = entry.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"{at}.preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
            if not own.empty or "phrase_status" in entry:
                raise ConfigError(f"{at}: give either preset or own rules (status, redirect, headers, phrases), not both")
            rules = PRESETS[preset]
        elif own.empty:
            raise ConfigError(f"{at}: needs a preset ({', '.join(PRESETS)}) or at least one rule "
                              "(status, redirect, headers, phrases)")
        else:
            rules = own
        targets.append(BanTarget(name, url, rules, preset))
    return tuple(targets)


def _own_rules(entry: dict[str, Any], at: str) -> BanRules:
    def strings(key: str) -> tuple[str, ...]:
        items = entry.get(key, [])
        if not isinstance(items, list) or not all(isinstance(s, str) and s.strip() for s in items):
            raise ConfigError(f"{at}.{key}: expected a list of non-empty strings, got {items!r}")
        return tuple(s.strip() for s in items)

    def statuses(key: str) -> frozenset[int]:
        items = entry.get(key, [])
        if not isinstance(items, list) or not all(type(s) is int and 100 <= s <= 599 for s in items):
            raise ConfigError(f"{at}.{key}: expected a list of HTTP statuses (100 to 599), got {items!r}")
        return frozenset(items)

    headers = []
    for h in strings("headers"):
        name, _, value = h.partition(":")
        headers.append((name.strip().lower(), value.strip().lower()))
    return BanRules(statuses("status"), strings("redirect"), tuple(headers),
                    tuple(p.lower() for p in strings("phrases")), statuses("phrase_status"))
