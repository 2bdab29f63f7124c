"""``[notify]``: where the daemon sends a message on each change of state, and how often.

Rules:
1. Each key is one ``key(...)`` line (config_keys.py); ``check(notify, where)`` holds the rules
   that relate keys, and is run by the loader after the file's paths are anchored (``secret_file``
   is relative to the config file), so ``config check`` refuses exactly what ``run`` would.
2. A webhook is always signed: ``webhook_url`` needs ``secret`` or ``secret_file`` (one of them).
   The secret is never shown: not in an error, a log line, a message or ``config check``.
   ``secret`` in the config file needs a file others cannot read; ``secret_file`` too.
3. Apprise is an optional extra (``.[apprise]``): ``apprise_urls`` without the ``apprise`` package
   installed is a ``ConfigError`` naming the key and the command that installs it. Its URLs carry tokens: secret.
"""

from __future__ import annotations

import importlib
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config_keys import key, shown
from ..errors import ConfigError

MIN_SECRET_LENGTH = 16
# The extra adds one third-party package; proxycheck itself is installed from a checkout or a wheel
# (tests/test_install_instructions.py), so the message names both ways.
APPRISE_EXTRA = "pip install 'apprise>=1.9'` in proxycheck's virtualenv, or `pip install '.[apprise]'` in its checkout"


def _webhook_url(url: str) -> str | None:
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a URL (a bad port or an unclosed IPv6 bracket)"
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0 or any(c.isspace() for c in url):
        return "is not an http:// or https:// URL with a host"
    return None


def _secret(value: str) -> str | None:
    if value and len(value) < MIN_SECRET_LENGTH:
        return (f"must be at least {MIN_SECRET_LENGTH} characters (e.g. the output of `python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)")
    return None


@dataclass(frozen=True)
class Notify:
    webhook_url: str = key("POST a JSON message to this URL on each change of state (docs/notify.md); empty: no "
                           "webhook", "", check=_webhook_url, accepts="http:// or https:// URL", secret=True)
    secret: str = key("shared secret of the webhook's X-Proxycheck-Signature (HMAC-SHA256 of the body); at least "
                      f"{MIN_SECRET_LENGTH} characters, in a config file others cannot read; or secret_file",
                      "", check=_secret, secret=True)
    secret_file: str = key("file holding the webhook's shared secret (not readable by others), instead of secret", "")
    apprise_urls: tuple[str, ...] = key(
        "Apprise URLs (Slack, Telegram, e-mail, ...) that get each message too; needs the apprise extra "
        "(docs/notify.md)", (), accepts="Apprise URLs", secret=True)
    healthy_below: float = key("a message when the healthy fraction of the judged proxies falls below this, and "
                               "one when it is back", 0.5, low=0, high=1)
    min_interval: float = key("seconds between two messages about one subject (the checker, the fleet, one guard, "
                              "one target); a change within it is sent when it ends, if still true", 60.0,
                              low=0, high=86400)
    retries: int = key("further attempts at a delivery that failed (timeouts, 5xx, 429), each logged", 5, low=0, high=20)
    retry_backoff: float = key("seconds before the first retry; doubling each time, at most 300", 1.0,
                               low=0.01, high=300)
    timeout: float = key("seconds one delivery may take", 10.0, low=0.1, high=300)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.apprise_urls)


def read_secret(n: Notify, where: str = "[notify]") -> bytes:
    """The webhook's shared secret: ``secret``, else ``secret_file``'s content (without the line
    end); ``ConfigError`` naming the key if the file cannot be used (rule 2)."""
    if not n.secret_file:
        return n.secret.encode()
    from ..filemodes import open_to_others

    path = Path(n.secret_file)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{where}.secret_file: cannot read {path}: {why}") from None
    if open_to_others(mode):
        raise ConfigError(f"{where}.secret_file: {path} is readable by every user (mode {stat.filemode(mode)}): "
                          f"run `chmod o-rwx {path}`")
    problem = _secret(text)
    if problem:
        raise ConfigError(f"{where}.secret_file: the secret in {path} {problem}")
    return text.encode()


def check(n: Notify, where: str = "[notify]") -> None:
    """The rules that relate keys (1-3); ``where`` is ``file: [notify]``."""
    if n.secret and n.secret_file:
        raise ConfigError(f"{where}.secret_file: give either secret or secret_file, not both")
    if (n.secret or n.secret_file) and not n.webhook_url:
        raise ConfigError(f"{where}.webhook_url: a secret is set but no webhook_url to sign for")
    if n.webhook_url and not (n.secret or n.secret_file):
        raise ConfigError(f"{where}.secret: webhook_url {shown(_origin(n.webhook_url))} needs a shared secret to sign "
                          "its messages: set secret (in a config file others cannot read) or secret_file")
    if n.webhook_url:
        read_secret(n, where)
    if n.apprise_urls:
        apprise = _apprise()
        if apprise is None:
            raise ConfigError(f"{where}.apprise_urls: the apprise package (the apprise extra) is not installed: run "
                              f"`{APPRISE_EXTRA} (or take apprise_urls out)")
        for i, url in enumerate(n.apprise_urls):
            if not apprise.Apprise().add(url):
                raise ConfigError(f"{where}.apprise_urls[{i}]: Apprise does not know this URL "
                                  f"(scheme {shown(url.partition('://')[0])}; see its wiki for the services' URLs)")


def _apprise():
    """The apprise module, or None when the extra is not installed."""
    try:
        return importlib.import_module("apprise")
    except ImportError:
        return None


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL, what logs and errors show (a webhook's path often holds a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
