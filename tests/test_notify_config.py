"""``[notify]`` keys: ``config check`` (the installed command) refuses each bad one naming the file
and the key, never showing the secret, and says how to install the apprise extra when it is missing
(notify/settings.py rules 1-3)."""

from __future__ import annotations

import pytest

from cli import run_cli

SECRET = "s3cret-" + "x" * 20
HOOK = "http://127.0.0.1:9/hook/T0KEN-IN-PATH"


def write(tmp_path, body: str, mode: int = 0o600):
    config = tmp_path / "proxycheck.toml"
    config.write_text(f'state_dir = "state"\n[notify]\n{body}\n')
    config.chmod(mode)
    return config


# (id, [notify] body, file mode, words in the error; None: accepted)
CASES = [
    ("webhook+secret", f'webhook_url = "{HOOK}"\nsecret = "{SECRET}"', 0o600, None),
    ("webhook+secret_file", f'webhook_url = "{HOOK}"\nsecret_file = "hook.secret"', 0o600, None),
    ("apprise", 'apprise_urls = ["json://127.0.0.1:9/path"]', 0o600, None),
    ("exposed-apprise", 'apprise_urls = ["json://127.0.0.1:9/path"]', 0o640 | 0o004,
     "[notify].apprise_urls: the file holds Apprise URLs (their tokens) and is readable by every user"),
    ("no-secret", f'webhook_url = "{HOOK}"', 0o600, "[notify].secret: webhook_url 'http://127.0.0.1:9' needs a shared secret"),
    ("both-secrets", f'webhook_url = "{HOOK}"\nsecret = "{SECRET}"\nsecret_file = "hook.secret"', 0o600,
     "[notify].secret_file: give either secret or secret_file, not both"),
    ("secret-no-hook", f'secret = "{SECRET}"', 0o600, "[notify].webhook_url: a secret is set but no webhook_url"),
    ("short-secret", f'webhook_url = "{HOOK}"\nsecret = "short"', 0o600, "[notify].secret: must be at least 16 characters"),
    ("exposed-secret", f'webhook_url = "{HOOK}"\nsecret = "{SECRET}"', 0o644,
     "[notify].secret: the file holds the webhook's secret and is readable by every user"),
    ("missing-secret-file", f'webhook_url = "{HOOK}"\nsecret_file = "nowhere"', 0o600,
     "[notify].secret_file: cannot read"),
    ("ftp-hook", f'webhook_url = "ftp://x/y"\nsecret = "{SECRET}"', 0o600,
     "[notify].webhook_url: is not an http:// or https:// URL with a host"),
    ("bad-fraction", "healthy_below = 1.5", 0o600, "[notify].healthy_below: must be a finite number between 0 and 1"),
    ("bad-retries", "retries = -1", 0o600, "[notify].retries: must be a whole number between 0 and 20"),
    ("unknown-key", "webhook = 1", 0o600, "[notify]: unknown key 'webhook'"),
    ("unknown-apprise", 'apprise_urls = ["nosuchservice://x"]', 0o600,
     "[notify].apprise_urls[0]: Apprise does not know this URL"),
]


@pytest.mark.parametrize(("body", "mode", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_config_check_names_the_notify_key(tmp_path, body, mode, words):
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    result = run_cli("config", "check", str(write(tmp_path, body, mode)))
    if words is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2, result.stdout + result.stderr
        assert words in result.stderr and str(tmp_path / "proxycheck.toml") in result.stderr, result.stderr
    output = result.stdout + result.stderr
    assert SECRET not in output and "T0KEN-IN-PATH" not in output


def test_an_exposed_secret_file_is_refused(tmp_path):
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    result = run_cli("config", "check", str(write(tmp_path, f'webhook_url = "{HOOK}"\nsecret_file = "hook.secret"')))
    assert result.returncode == 2
    assert f"[notify].secret_file: {secret_file} is readable by every user" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_apprise_urls_without_the_extra_say_how_to_install_it(tmp_path):
    """The package is hidden the way a missing one fails: ``import apprise`` raises ImportError."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "apprise.py").write_text("raise ImportError('No module named apprise')\n")
    config = write(tmp_path, 'apprise_urls = ["tgram://bottoken/ChatID"]')
    result = run_cli("config", "check", str(config), env={"PYTHONPATH": str(hide)})
    assert result.returncode == 2
    assert ("[notify].apprise_urls: the apprise package (the apprise extra) is not installed: run "
            "`pip install 'apprise>=1.9'` in proxycheck's virtualenv, or `pip install '.[apprise]'` in its checkout "
            "(or take apprise_urls out)") in result.stderr
    assert "bottoken" not in result.stderr
