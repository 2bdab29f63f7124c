"""Ban targets (pure): each preset's ban answers, and [[targets.ban]] as config."""

import pytest

from proxycheck.bans import PRESETS
from proxycheck.config import settings_from_dict
from proxycheck.errors import ConfigError

SORRY = "https://www.google.com/sorry/index?continue=https://www.google.com/search%3Fq%3Dx"
UNUSUAL = "<html>Our systems have detected unusual traffic from your computer network.</html>"
CF_PAGE = "<html><title>Just a moment...</title><script>window._cf_chl_opt={}</script></html>"
CF = {"cf-mitigated": "challenge", "server": "cloudflare", "cf-ray": "abc-FRA"}

# (preset, status, headers, body, banned): every preset has rows both ways, including the
# answers it must *not* take for a ban (its own errors, a page on Cloudflare that is not a challenge).
ROWS = [
    ("recaptcha", 200, {}, '<div id="recaptcha-anchor">', False),
    ("recaptcha", 429, {}, UNUSUAL, True),
    ("recaptcha", 302, {"location": SORRY}, "", True),
    ("recaptcha", 403, {}, UNUSUAL, True),
    ("recaptcha", 500, {}, UNUSUAL, False),
    ("recaptcha", 200, {}, '<div class="rc-doscaptcha-header">Try again later</div>', True),
    ("google_search", 200, {}, "<html>results</html>", False),
    ("google_search", 302, {"location": SORRY}, "", True),
    ("google_search", 302, {"location": "https://www.google.com/webhp"}, "", False),
    ("google_search", 503, {}, "", True),
    ("google_search", 403, {}, "automated queries", True),
    ("google_search", 404, {}, "", False),
    ("hcaptcha", 200, {}, '{"pass": true, "c": {"type": "hsw", "req": "x"}}', False),
    ("hcaptcha", 429, {}, '{"pass": false}', True),
    ("hcaptcha", 200, {}, '{"pass":false,"error":"rate limited"}', True),
    ("hcaptcha", 500, {}, "oops", False),
    ("turnstile", 200, {"server": "cloudflare", "cf-ray": "x"}, "<div class=cf-turnstile>", False),
    ("turnstile", 403, CF, CF_PAGE, True),
    ("turnstile", 429, CF, "", True),
    ("turnstile", 403, {"server": "cloudflare"}, "error code: 1020", True),
    ("turnstile", 403, {"server": "cloudflare"}, "Forbidden", False),
    ("turnstile", 200, {}, "just a moment... is a phrase on a working page too", False),
    ("funcaptcha", 200, {}, '{"token": "x|r=eu"}', False),
    ("funcaptcha", 403, {}, "Access denied", True),
    ("funcaptcha", 429, {}, "", True),
    ("funcaptcha", 503, {}, "maintenance", False),
]


@pytest.mark.parametrize(("preset", "status", "headers", "body", "banned"), ROWS)
def test_presets(preset, status, headers, body, banned):
    assert (PRESETS[preset].detect(status, headers, body) is not None) is banned


def test_every_preset_has_rows_both_ways():
    assert {(p, b) for p, *_, b in ROWS} == {(p, b) for p in PRESETS for b in (True, False)}


def targets(*entries, **extra):
    return settings_from_dict({"targets": {"ban": list(entries), **extra}}, "f.toml").targets


def test_ban_url_is_one_recaptcha_target_and_tables_replace_it():
    default = settings_from_dict({}, "f.toml").targets.ban_targets
    assert [(t.name, t.preset, t.config_key) for t in default] == [("recaptcha", "recaptcha", "ban_url")]
    got = targets({"name": "cf", "url": "https://a.example/", "preset": "turnstile"},
                  {"name": "shop", "url": "http://b.example/", "status": [403], "headers": ["X-Blocked"],
                   "phrases": ["Go Away"], "phrase_status": [200]}).ban_targets
    assert [t.name for t in got] == ["cf", "shop"]
    shop = got[1].rules
    assert shop.detect(403, {}, "") and shop.detect(200, {"x-blocked": "1"}, "") and shop.detect(200, {}, "go away!")
    assert shop.detect(500, {}, "go away") is None and shop.detect(200, {}, "welcome") is None


@pytest.mark.parametrize(
    ("entry", "extra", "message"),
    [
        ({"url": "https://a/", "preset": "turnstile"}, {}, r"\[targets\]\.ban\[0\]\.name: expected lower-case"),
        ({"name": "A B", "url": "https://a/", "preset": "turnstile"}, {}, r"ban\[0\]\.name"),
        ({"name": "cf", "url": "ftp://a/", "preset": "turnstile"}, {}, r"ban\[0\]\.url: 'ftp://a/' is not"),
        ({"name": "cf", "url": "https://a/", "preset": "cloudflare"}, {}, r"ban\[0\]\.preset: must be one of recaptcha"),
        ({"name": "cf", "url": "https://a/"}, {}, r"ban\[0\]: needs a preset"),
        ({"name": "cf", "url": "https://a/", "preset": "turnstile", "status": [429]}, {}, "either preset or own rules"),
        ({"name": "cf", "url": "https://a/", "status": [99]}, {}, r"ban\[0\]\.status: expected a list of HTTP statuses"),
        ({"name": "cf", "url": "https://a/", "phrases": "x"}, {}, r"ban\[0\]\.phrases: expected a list"),
        ({"name": "cf", "url": "https://a/", "preset": "turnstile", "colour": 1}, {}, r"ban\[0\]: unknown key 'colour'"),
        ({"name": "cf", "url": "https://a/", "preset": "turnstile"}, {"ban_url": "https://g/"}, "either ban_url or"),
    ],
)
def test_bad_entries_name_the_key(entry, extra, message):
    with pytest.raises(ConfigError, match=message):
        targets(entry, **extra)


def test_names_are_unique():
    one = {"name": "cf", "url": "https://a/", "preset": "turnstile"}
    with pytest.raises(ConfigError, match=r"ban\[1\]\.name: 'cf' is used twice"):
        targets(one, one)
