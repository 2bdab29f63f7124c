"""The HTTP endpoint's bearer token: where it comes from, for the daemon and its workers alike.

Rules:
1. One order, for ``proxycheck run`` and for every worker (as the database is found):
   ``$PROXYCHECK_TOKEN``, then ``[http].token`` of the config, then the token file
   ``<state_dir>/http-token``. So a daemon and its workers, sharing a config, always agree.
2. Only the daemon creates the file, and only when nothing else gave a token: 32 random bytes
   (``secrets.token_urlsafe``), written to a temporary name opened with ``O_CREAT | O_EXCL`` and
   mode ``FILE_MODE`` 0640 (set whatever the umask; never readable by others, not even for a
   moment), then linked into place, so a reader never sees a half-written token and two daemons
   starting at once end up with one.
3. The daemon's group may read the file: workers in it (the ``proxycheck`` group of
   deploy/proxycheck.service) run ``proxycheck token``. A token file others can read (``o+r``)
   is refused, not used: the token guards every proxy password.
4. The token's *value* is never logged or put in an error; its source and path are.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import MIN_TOKEN_LENGTH, Settings
from .errors import ConfigError
from .filemodes import make_state_dir

TOKEN_ENV = "PROXYCHECK_TOKEN"
TOKEN_FILE = "http-token"
FILE_MODE = 0o640  # rules 2 and 3: owner writes, group reads, others nothing


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # "$PROXYCHECK_TOKEN", "[http].token" or the file's path; safe to log
    created: bool = False  # True when this call generated the file


def token_path(settings: Settings) -> Path:
    """``<state_dir>/http-token`` (``state_dir`` is already anchored to the config's directory)."""
    return Path(settings.state_dir).resolve() / TOKEN_FILE


def find_token(settings: Settings, environ: Mapping[str, str] | None = None) -> Token | None:
    """The token by rule 1, or None when there is none yet. Raises ``ConfigError`` for a token
    file that exists but cannot be used (unreadable, empty, readable by others)."""
    environ = os.environ if environ is None else environ
    if environ.get(TOKEN_ENV, "").strip():
        return _checked(Token(environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"))
    if settings.http.token:
        return _checked(Token(settings.http.token, "[http].token"))
    path = token_path(settings)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the HTTP token file {path}: {exc.strerror}; run as the daemon's user "
                          f"(or a member of its group), or set ${TOKEN_ENV}") from None
    with os.fdopen(fd) as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if mode & stat.S_IROTH or mode & stat.S_IWOTH:
            raise ConfigError(f"the HTTP token file {path} is readable by every user (mode {stat.filemode(mode)}): "
                              f"run `chmod 640 {path}`, or delete it and restart the daemon to get a new one")
        value = fh.read().strip()
    if not value or "\n" in value:
        raise ConfigError(f"the HTTP token file {path} must hold one line, the token; delete it and restart the daemon "
                          "to get a new one")
    return _checked(Token(value, str(path)))


def _checked(token: Token) -> Token:
    """A token travels in an HTTP header: printable ASCII, no spaces (the message never shows it)."""
    if not (token.value.isascii() and token.value.isprintable() and " " not in token.value):
        raise ConfigError(f"the HTTP token from {token.source} must be printable ASCII without spaces "
                          "(e.g. the output of `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    if len(token.value) < MIN_TOKEN_LENGTH:  # the config's own rule (config_sections.py), for every source
        raise ConfigError(f"the HTTP token from {token.source} must be at least {MIN_TOKEN_LENGTH} characters "
                          "(e.g. the output of `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    return token


def ensure_token(settings: Settings, environ: Mapping[str, str] | None = None) -> Token:
    """The daemon's side: ``find_token``, else generate the file (rule 2)."""
    found = find_token(settings, environ)
    if found is not None:
        return found
    path = token_path(settings)
    try:
        make_state_dir(path.parent)  # filemodes.py
        tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
        try:
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), FILE_MODE)  # a umask of 077 would have taken the group's read
                fh.write(secrets.token_urlsafe(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # never replaces a file another daemon linked first
                created = True
            except FileExistsError:
                created = False
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the HTTP token file {path}: {exc.strerror}; make state_dir writable by the "
                          "daemon's user, or set [http].token") from None
    token = find_token(settings, environ)
    assert token is not None  # just linked (by us or by a daemon that won the race)
    return Token(token.value, token.source, created=created)


def worker_token(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """A worker's side: the token, or a ``ConfigError`` that says where it looked."""
    found = find_token(settings, environ)
    if found is None:
        where = settings.source_file or "no config file: $PROXYCHECK_CONFIG is not set and there is no ./proxycheck.toml"
        raise ConfigError(
            f"no HTTP token found: ${TOKEN_ENV} is not set, [http].token is empty ({where}), and "
            f"{token_path(settings)} does not exist yet (the daemon writes it on its first start with "
            "[http].enabled = true); point $PROXYCHECK_CONFIG at the daemon's config, or set $PROXYCHECK_TOKEN")
    return found.value


__all__ = ["FILE_MODE", "TOKEN_ENV", "TOKEN_FILE", "Token", "ensure_token", "find_token", "token_path", "worker_token"]
