"""Ban-page recognition (pure)."""

import pytest

from proxycheck.bans import PRESETS

detect_ban = PRESETS["recaptcha"].detect  # what the single `ban_url` always used

SORRY = "https://www.google.com/sorry/index?continue=https://www.google.com/recaptcha/api2/anchor"
UNUSUAL = "<html>Our systems have detected unusual traffic from your computer network.</html>"


@pytest.mark.parametrize(
    ("status", "headers", "body", "banned"),
    [
        (200, {}, "<html>recaptcha anchor</html>", False),
        (204, {}, "", False),
        (429, {}, "Too many", True),
        (429, {}, UNUSUAL, True),
        (302, {"location": SORRY}, "", True),
        (302, {"location": "https://www.google.com/recaptcha/api2/bframe"}, "", False),
        (403, {}, UNUSUAL, True),
        (503, {}, UNUSUAL, True),
        (403, {}, "<html>Forbidden</html>", False),
        (500, {}, UNUSUAL, False),
        (403, {"cf-mitigated": "challenge", "server": "cloudflare"}, "Just a moment...", True),
        (403, {"server": "cloudflare", "cf-ray": "abc"}, "Access denied", False),
    ],
)
def test_detect_ban(status, headers, body, banned):
    assert (detect_ban(status, headers, body) is not None) is banned
