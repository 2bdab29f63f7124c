"""Configuration: one TOML file, validated at load, passed down as a frozen ``Settings``.

Rules:
1. Every section is a frozen dataclass whose fields are the keys. Each key is declared once, with
   ``config_keys.key(doc, default, low=/high=/above=/choices=/check=)``: type, default, allowed
   values and doc in one line. The loader, the checks on sections built in code and the config
   reference in docs/configuration.md (``reference_markdown()``) all read that declaration.
2. An unknown key, a value of the wrong type, a number that is not finite or out of its range, a
   target URL the probes could not use or a database the store refuses is a ``ConfigError``
   naming ``file: [section].key``; keys that relate must agree (``RELATIONS``).
3. Precedence: built-in defaults < file (``--config``, else ``$PROXYCHECK_CONFIG``, else
   ``./proxycheck.toml`` if present) < environment (``PROXYCHECK_DATABASE_URL``) < flags.
4. No globals: whoever needs settings receives them.

Adding a key: one ``key(...)`` line in its section's dataclass (a new section also needs a
``Settings`` field and a ``SECTIONS`` entry), a line in ``proxycheck.example.toml`` if users
should see it, then ``python tests/unit/test_config.py`` to regenerate docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import stat
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import bans
from .config_keys import Validator, allowed, check_fields, coerce, key, shown
from .errors import ConfigError, StorageError
from .health import HealthPolicy
from .sticky import DEFAULT_WINDOW
from .wire import parse_target

DEFAULT_CONFIG_FILE = "proxycheck.toml"

# Google's public test site key: a reCAPTCHA URL any IP may fetch unless Google bans it.
_RECAPTCHA_ANCHOR = (
    "https://www.google.com/recaptcha/api2/anchor?ar=1&k=6LeIxAcTAAAAAJcZVRqyHh4o8iZ5XYZwTqXCDjR7T"
    "&co=aHR0cHM6Ly93d3cuZ29vZ2xlLmNvbTo0NDM.&hl=en&size=normal"
)


def _url(*schemes: str) -> Validator:
    """A check for a target URL: one of ``schemes``, a host, a usable port, and a URL the probes'
    wire layer can send as is (``wire.parse_target``; HTTP/1.1 request lines are ASCII, so a
    non-ASCII path or host must be percent-encoded or IDNA-encoded in the file: we refuse, never
    rewrite, so the URL fetched is the URL written)."""
    kind = " or ".join(f"{s}://" for s in schemes)

    def check(url: str) -> str | None:
        text = shown(url)
        try:
            parts = urlsplit(url)
        except ValueError:
            return f"{text} is not a URL (a bracketed IPv6 host is unclosed or invalid)"
        if parts.scheme not in schemes or not parts.hostname:
            return f"{text} is not a {kind} URL with a host"
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0 or any(c.isspace() for c in url):
            return f"{text} is not a usable URL (its port must be a number from 1 to 65535, no spaces)"
        if not url.isascii():  # (control characters are refused for every key, before this check)
            return (f"{text} has non-ASCII characters an HTTP request cannot carry; "
                    "percent-encode the path and query (€ is %E2%82%AC) and write a non-ASCII host "
                    "in its IDNA form (xn--...)")
        parse_target(url)  # what the probes do with it: must not raise for a URL accepted here
        return None

    return check


def _url_key(doc: str, default: Any, *schemes: str) -> Any:
    """A ``[targets]`` key holding a URL (or a list of them) of one of ``schemes``."""
    return key(doc, default, check=_url(*schemes), accepts=" or ".join(f"{s}://" for s in schemes) + " URL")


def _header_value(value: str) -> str | None:
    """A header the wire sends as is: HTTP/1.1 header values are ASCII (RFC 9110 §5.5)."""
    if not value.strip() or not (value.isascii() and value.isprintable()):
        return f"{shown(value)} is not a header value the probes can send (printable ASCII, not empty)"
    return None


def _path(value: str) -> str | None:
    return None if value.strip() else "must be a path, not empty"


def _listen(value: str) -> str | None:
    _host, sep, port = value.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        return f"{shown(value)} is not HOST:PORT (e.g. 127.0.0.1:8181)"
    return None


MIN_TOKEN_LENGTH = 32  # characters of an HTTP token, from any source (http_token.py)


def _token(value: str) -> str | None:
    """A configured HTTP token guards every proxy password: long enough not to be guessed (the
    endpoint also throttles guesses: http_api/guard.py). The message never shows it; printable
    ASCII is checked where every source is (http_token.py)."""
    if value and len(value) < MIN_TOKEN_LENGTH:
        return (f"must be at least {MIN_TOKEN_LENGTH} characters (e.g. the output of `python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`), or leave it out to have one generated in <state_dir>/http-token")
    return None


def _host_name(value: str) -> str | None:
    if not value or value != value.strip() or any(c in value for c in "/@ \t"):
        return f"{shown(value)} is not a host name (e.g. proxycheck.internal)"
    return None


def _database_url(url: str) -> str | None:
    """The store's own rule (``store.engine.normalize_url``), so ``config check`` refuses exactly
    what every command would. Imported here, not at the top: the store imports half the package."""
    if not url:
        return None
    from .store.engine import normalize_url

    try:
        normalize_url(url)
    except StorageError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Targets:
    judge_url: str = _url_key("plain-HTTP header echo (httpbin /get JSON or azenv text); shorthand for one judge, "
                              "not with judge_urls", "http://httpbin.org/get", "http")
    judge_urls: tuple[str, ...] = _url_key(
        "judges, in order of preference: the anonymity probe asks the first one that answers the checker, and the "
        "checker is degraded only when none does (empty: the one `judge_url`)", (), "http")
    ip_url: str = _url_key("direct IP echo: the checker's own public IP", "https://api.ipify.org/?format=json",
                           "http", "https")
    ssl_url: str = _url_key("HTTPS URL fetched through a CONNECT tunnel (TLS verified)",
                            "https://www.google.com/generate_204", "https")
    image_urls: tuple[str, ...] = _url_key(
        "images downloaded through the proxy (status, type, magic bytes, length)",
        (
            "http://www.google.com/images/branding/googlelogo/1x/googlelogo_color_272x92dp.png",
            "https://www.gstatic.com/recaptcha/api2/logo_48.png",
        ),
        "http", "https",
    )
    long_get_url: str = _url_key("plain-HTTP URL that answers 200 to a long query string", "http://httpbin.org/get", "http")
    ban_url: str = _url_key("shorthand for one `recaptcha` ban target; not with [[targets.ban]]", _RECAPTCHA_ANCHOR,
                            "http", "https")
    ban: tuple[bans.BanTarget, ...] = key(
        "ban targets, one [[targets.ban]] table each (keys below); none: the one `ban_url` target", (),
        accepts="[[targets.ban]] tables",
    )
    ca_file: str = key("extra CA bundle (PEM) trusted besides the system's; must load at start", "")

    @property
    def judges(self) -> tuple[str, ...]:
        """Every judge: ``judge_urls``, else ``judge_url`` as the one."""
        return self.judge_urls or (self.judge_url,)

    @property
    def ban_targets(self) -> tuple[bans.BanTarget, ...]:
        """Every ban target: the [[targets.ban]] tables, else ``ban_url`` as one ``recaptcha``."""
        return self.ban or (bans.from_ban_url(self.ban_url),)

    def urls(self, key: str) -> tuple[str, ...]:
        """The URLs the probes fetch for ``key`` (``ban_url`` is unused when tables are given)."""
        if key in ("ban", "ban_url"):
            return tuple(t.url for t in self.ban_targets if (t.config_key == "ban_url") == (key == "ban_url"))
        if key == "judge_url":  # like ban_url: unused when the list is given
            return () if self.judge_urls else (self.judge_url,)
        value = getattr(self, key)
        return value if isinstance(value, tuple) else (value,)


@dataclass(frozen=True)
class Timeouts:
    connect: float = key("seconds for the TCP connect to the proxy", 5.0, low=0.1, high=600)
    read: float = key("seconds to wait for each answer through the proxy", 10.0, low=0.1, high=600)
    probe: float = key("hard deadline per probe, whatever hangs (SOCKS handshakes included)", 25.0, low=0.1, high=3600)


@dataclass(frozen=True)
class ProbeSchedule:
    """``[probes.<name>]``: how often one probe runs on one proxy. Between runs its last result
    stands (probes/schedule.py). The defaults are each probe's own (``ProbeSpec.every``)."""

    every: float = key("seconds between runs of this probe on one proxy; between runs its last result stands "
                       "(0: every check)", 0.0, low=0, high=604800)
    jitter: float = key("fraction of `every` by which a run may come early, different per proxy, so costly "
                        "probes spread out instead of coming due together", 0.0, low=0, high=0.9)


@dataclass(frozen=True)
class Probes:
    max_requests_per_host: float = key(
        "requests per second one daemon sends to one target host of a rate-limited probe (ssl, images, ban), "
        "from every exit together; waiting for it is not counted in the probe's deadline (0: no limit)",
        0.0, low=0, high=100_000)
    long_get_bytes: int = key("minimum length of the long GET's request line", 2048, low=0, high=65536)
    image_max_bytes: int = key("largest image body accepted", 5_000_000, low=1, high=1_000_000_000)
    sticky_seconds: float = key(
        "seconds an exit IP must hold to count as sticky (about one solve); tag `rotating` marks gateways",
        DEFAULT_WINDOW, low=1, high=86400)
    sticky_refresh: float = key(
        "seconds a stable or rotating verdict stands before the daemon re-reads the exit IP within sticky_seconds "
        "(follow-up visits sticky_seconds / 2 apart)", 3600.0, low=1, high=604800)
    user_agent: str = key(
        "User-Agent sent through proxies",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
        check=_header_value, accepts="printable ASCII, not empty",
    )
    # ``[probes.<name>]`` tables, only those the file sets (the loader resolves them against the
    # probe's own defaults); ``probes.schedule.schedule_for`` is the one reader.
    schedules: dict[str, ProbeSchedule] = field(default_factory=dict, metadata={"subtables": ProbeSchedule})


@dataclass(frozen=True)
class Check:
    concurrency: int = key("proxies checked at once", 50, low=1, high=10_000)


@dataclass(frozen=True)
class Daemon:
    sources: tuple[str, ...] = key("CSV files of proxies, synced at start, on SIGHUP and every sync_interval", (),
                                   check=_path)
    sync_interval: float = key("seconds between re-reads of the source files", 300.0, low=1, high=86400)
    dispatch_interval: float = key("seconds between looks for due proxies", 1.0, low=0.01, high=60)
    lease_seconds: float = key("how long a claimed proxy stays ours before another daemon may take it", 180.0,
                               low=1, high=86400)
    drain_grace: float = key("seconds SIGTERM waits for in-flight checks before cancelling them", 20.0, low=0, high=3600)
    own_ip_interval: float = key("seconds between refreshes of the checker's own IP", 600.0, low=1, high=86400)
    heartbeat_interval: float = key(
        "seconds between direct requests to the judge (a dead judge stops all judging within this) and between "
        "the daemon's heartbeats; failures wait for a self-test at most this long", 5.0, low=0.1, high=3600)
    retention_interval: float = key("seconds between history clean-ups", 3600.0, low=1, high=604800)
    keep_checks_per_proxy: int = key("history rows always kept per proxy", 20, low=0, high=1_000_000)
    keep_success_days: float = key("days successful checks beyond those are kept (0.25: the last 6 hours)", 0.25,
                                   low=0, high=3650)
    keep_failure_days: float = key("days failed checks and worker reports beyond those are kept", 3.0, low=0, high=3650)


@dataclass(frozen=True)
class Http:
    enabled: bool = key("serve the worker HTTP endpoint from `proxycheck run`", False)
    listen: str = key("HOST:PORT to bind (keep it on loopback or a private network)", "127.0.0.1:8181",
                      check=_listen, accepts="HOST:PORT")
    token: str = key("every request but /healthz needs `Authorization: Bearer <token>`; empty: a random one is kept in "
                     "<state_dir>/http-token (mode 0640, readable by its group; `proxycheck token` prints it); at least "
                     "32 characters, in a config file others cannot read", "", secret=True, check=_token,
                     accepts="empty, or 32+ characters")
    allowed_hosts: tuple[str, ...] = key("host names a request's `Host:` may carry besides the listen address "
                                         "(e.g. behind a reverse proxy); any other Host gets 421", (),
                                         check=_host_name, accepts="host names")


STRATEGIES = ("random", "round_robin", "least_used", "fastest")


@dataclass(frozen=True)
class Worker:
    """How ``get_healthy_proxy()`` chooses and how ``report()`` acts. A proxy is handed out iff
    it is enabled, healthy, and its last successful check is at most ``max_age`` seconds old.
    Reports may take out ``max(1, floor(enabled × max_reported_percent / 100))`` proxies per
    ``report_window`` seconds."""

    max_age: float = key("seconds: a proxy whose last successful check is older is never handed out "
                          "(default 3 × [health].interval)", 900.0, above=0, high=604800)
    strategy: str = key("default strategy: random, round_robin, least_used or fastest", "random", choices=STRATEGIES)
    snapshot_seconds: float = key(
        "seconds each worker process reuses its list of healthy proxies; every hand-out is re-read, so this "
        "only delays newly healthy ones (0: query every call)", 2.0, low=0, high=3600)
    reprobe_after: float = key("seconds after a worker reports a proxy error until the daemon re-checks it", 15.0,
                               low=0, high=86400)
    max_reported_percent: float = key("most of the enabled pool (percent, at least 1 proxy) reports may take out per window",
                                      10.0, above=0, high=100)
    report_window: float = key("seconds of the guard rail's window", 300.0, low=1, high=86400)
    lease_ttl: float = key("seconds a check-out lease (`proxycheck.lease()`, POST /lease) holds its proxy unless "
                           "released sooner; it frees itself after", 180.0, low=1, high=86400)
    max_concurrent_per_proxy: int = key("check-out leases held at once on one proxy, across every worker process",
                                        1, low=1, high=10_000)
    cooldown_seconds: float = key("seconds a proxy rests after each check-out lease ends (released or expired)",
                                  0.0, low=0, high=86400)


@dataclass(frozen=True)
class ServiceBudget:
    """``[guard.<service>]``: one captcha service's error budget (guard.py rule 2). Keys left out
    keep the service's documented default (``guard.DOCUMENTED``), else this class's."""

    max_proxy_errors: int = key("proxy errors this service may see per window before hand-out for it stops "
                                "(0: no limit)", 10, low=0, high=1_000_000)
    window: float = key("seconds of this service's error window", 600.0, low=1, high=86400)


@dataclass(frozen=True)
class Guard:
    """The account guard (guard.py, docs/guard.md): at most ``max_proxy_errors`` proxy errors per
    ``window`` seconds per captcha service; ``[guard.<service>]`` tables set one service's."""

    max_proxy_errors: int = key("proxy errors a service without its own [guard.<service>] (and not documented) may "
                                "see per window (0: no limit)", 10, low=0, high=1_000_000)
    window: float = key("seconds of the window of such a service, and of the subnet rule", 600.0, low=1, high=86400)
    subnet_errors: int = key("proxy errors reported on the proxies of one /24 (IPv4) or /48 (IPv6), from two or more "
                             "of them, within [guard].window that hold that subnet's proxies back until a check of one "
                             "passes (0: off)", 3, low=0, high=1_000_000)
    # ``[guard.<service>]`` tables, only those the file sets; ``guard.budget_for`` is the one reader.
    services: dict[str, ServiceBudget] = field(default_factory=dict, metadata={"subtables": ServiceBudget})


@dataclass(frozen=True)
class Settings:
    database_url: str = key("SQLAlchemy URL, SQLite or PostgreSQL; empty = SQLite in state_dir", "",
                            check=_database_url, accepts="sqlite:///FILE or postgresql://...", secret=True)
    state_dir: str = key("directory for the SQLite database and lock file", "./state", check=_path)
    targets: Targets = field(default_factory=Targets)
    timeouts: Timeouts = field(default_factory=Timeouts)
    probes: Probes = field(default_factory=Probes)
    check: Check = field(default_factory=Check)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    daemon: Daemon = field(default_factory=Daemon)
    http: Http = field(default_factory=Http)
    worker: Worker = field(default_factory=Worker)
    guard: Guard = field(default_factory=Guard)
    source_file: str | None = None  # where the settings came from (not a key)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.state_dir).resolve() / 'proxycheck.db'}"


SECTIONS = ("targets", "timeouts", "probes", "check", "health", "daemon", "http", "worker", "guard")
_NOT_KEYS = {"source_file"}


def find_config_file(explicit: str | None) -> Path | None:
    """``--config``, else ``$PROXYCHECK_CONFIG``, else ``./proxycheck.toml`` when it exists."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("PROXYCHECK_CONFIG")
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def load_settings(explicit: str | None = None, *, environ: dict[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    path = find_config_file(explicit)
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
    settings = settings_from_dict(data, str(path) if path else "defaults")
    if path is not None and settings.http.token:
        _check_secret_file(path, "[http].token")
    # Relative paths in the file are relative to the file, so systemd and a shell agree.
    if path is not None:
        settings = _anchor_paths(settings, path.parent)
        _check_ca_file(settings.targets.ca_file, f"{path}: [targets].ca_file")
    env_url = environ.get("PROXYCHECK_DATABASE_URL")
    if env_url:
        url = _value(Settings, "database_url", env_url, "environment: PROXYCHECK_DATABASE_URL")
        settings = dataclasses.replace(settings, database_url=url)
    return dataclasses.replace(settings, source_file=str(path) if path else None)


def _check_secret_file(path: Path, key: str) -> None:
    """A config file holding ``key`` (a secret) that others can read is refused, as the token
    file is (filemodes.py rule 4): the secret guards every proxy password."""
    from .filemodes import open_to_others

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if open_to_others(mode):
        raise ConfigError(f"{path}: {key}: the file holds the HTTP token and is readable by every user "
                          f"(mode {stat.filemode(mode)}): run `chmod o-rwx {path}`, or take the token out of it "
                          "($PROXYCHECK_TOKEN, or no token: one is generated in <state_dir>/http-token)")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (create it from proxycheck.example.toml)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


# Keys that relate, checked after each is inside its own range: (key, "<=" or ">=", other key).
# Not here on purpose: interval <= max_interval (checking dead proxies more often than healthy
# ones is a valid choice).
RELATIONS = (
    (("health", "fast_interval"), "<=", ("health", "interval")),
    (("health", "failing_interval"), "<=", ("health", "max_interval")),
    (("timeouts", "connect"), "<=", ("timeouts", "probe")),
    (("timeouts", "read"), "<=", ("timeouts", "probe")),
    # A healthy proxy is re-checked every interval; a shorter max_age would hide it in between.
    (("worker", "max_age"), ">=", ("health", "interval")),
)


def settings_from_dict(data: dict[str, Any], origin: str) -> Settings:
    """``data`` (a parsed TOML document) as ``Settings``; a ``ConfigError`` naming the first bad
    key otherwise. ``origin`` (the file name) starts every message."""
    top: dict[str, Any] = {}
    for name, value in data.items():
        if name in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: [{name}] must be a table")
            top[name] = _build(_section_type(name), value, f"{origin}: [{name}].")
        elif name in _known_top():
            top[name] = _value(Settings, name, value, f"{origin}: {name}")
        else:
            raise ConfigError(f"{origin}: unknown key {name!r} (known: {', '.join(_known_top())})")
    settings = Settings(**top)
    if "max_age" not in data.get("worker", {}):  # follows the check interval unless set
        settings = dataclasses.replace(settings, worker=dataclasses.replace(settings.worker, max_age=3 * settings.health.interval))
    for (sec_a, key_a), op, (sec_b, key_b) in RELATIONS:
        a, b = getattr(getattr(settings, sec_a), key_a), getattr(getattr(settings, sec_b), key_b)
        if (a > b) if op == "<=" else (a < b):
            bound = "at most" if op == "<=" else "at least"
            raise ConfigError(f"{origin}: [{sec_a}].{key_a}: must be {bound} [{sec_b}].{key_b} ({b:g}), got {a:g}")
    return settings


def _section_type(name: str) -> type:
    return _field_types(Settings)[name]


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _known_top() -> list[str]:
    return sorted(k for k in _fields(Settings) if k not in SECTIONS and k not in _NOT_KEYS)


def _build(cls: type, table: dict[str, Any], where: str) -> Any:
    values = {}
    subtables = {f.name: f.metadata["subtables"] for f in dataclasses.fields(cls) if "subtables" in f.metadata}
    for name, value in table.items():
        if isinstance(value, dict) and subtables:
            (field_name, sub_cls), = subtables.items()
            values.setdefault(field_name, {})[name] = _subtable(sub_cls, name, value, where)
            continue
        if name not in _fields(cls) or name in subtables:
            what = "<service>" if cls is Guard else "<probe>"
            known = sorted(set(_fields(cls)) - set(subtables)) + [f"[{where.split('[')[-1][:-2]}.{what}]" for _ in subtables]
            raise ConfigError(f"{where[:-1]}: unknown key {name!r} (known: {', '.join(known)})")
        if cls is Targets and name == "ban":  # an array of tables, not a key of one type
            if "ban_url" in table:
                raise ConfigError(f"{where}ban_url: give either ban_url or [[targets.ban]] tables, not both "
                                  "(ban_url is shorthand for one entry with preset = \"recaptcha\")")
            values[name] = bans.parse_entries(value, f"{where}ban", _url("http", "https"))
            continue
        if cls is Targets and name == "judge_urls":
            if "judge_url" in table:
                raise ConfigError(f"{where}judge_url: give either judge_url or judge_urls, not both "
                                  "(judge_url is shorthand for judge_urls = [judge_url])")
            if isinstance(value, list) and not value:
                raise ConfigError(f"{where}judge_urls: the list is empty; name at least one judge "
                                  "(or leave the key out to use judge_url)")
        values[name] = _value(cls, name, value, f"{where}{name}")
    return cls(**values)


def _subtable(cls: type, name: str, table: dict[str, Any], where: str) -> Any:
    """``[probes.<name>]``: ``name`` must be a registered probe; keys it leaves out keep the
    probe's own defaults. ``[guard.<service>]``: any service name (guard.py rule 1); keys it
    leaves out keep the service's documented default."""
    if cls is ServiceBudget:
        return _service_budget(name, table, where)
    from .probes import REGISTRY  # late: the probes import this module

    specs = {spec.name: spec for spec in REGISTRY}
    inner = f"{where[:-2]}.{name}]."
    if name not in specs:
        raise ConfigError(f"{inner[:-1]}: unknown probe {name!r} (probes: {', '.join(specs)})")
    built = _build(cls, table, inner)
    given = {k: getattr(built, k) for k in table}
    return dataclasses.replace(cls(every=specs[name].every, jitter=specs[name].jitter), **given)


def _service_budget(name: str, table: dict[str, Any], where: str) -> ServiceBudget:
    from .guard import DOCUMENTED, service_name

    inner = f"{where[:-2]}.{name}]."
    try:
        service = service_name(name)
    except ValueError as exc:
        raise ConfigError(f"{inner[:-1]}: {exc}") from None
    if service != name:
        raise ConfigError(f"{inner[:-1]}: write the service's name as {service!r} (lower case, no spaces)")
    built = _build(ServiceBudget, table, inner)
    base = ServiceBudget(*DOCUMENTED[name]) if name in DOCUMENTED else ServiceBudget()
    return dataclasses.replace(base, **{k: getattr(built, k) for k in table})


def _value(cls: type, name: str, value: Any, where: str) -> Any:
    return coerce(_field_types(cls)[name], value, _fields(cls)[name].metadata, where)


def check_worker(w: Worker, where: str = "") -> None:
    """Check a ``[worker]`` section built in code (``WorkerSettings``) as the loader checks the file."""
    check_fields(w, f"{where}[worker].")


def _check_ca_file(ca_file: str, where: str) -> None:
    """Every command that checks would fail on a CA bundle it cannot load; so does the loader
    (after anchoring the path to the config file, which is why this is not a key's ``check``)."""
    if not ca_file:
        return
    try:
        ssl.create_default_context().load_verify_locations(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError is an OSError too
        why = "no PEM certificate in it" if isinstance(exc, ssl.SSLError) else exc.strerror
        raise ConfigError(f"{where}: cannot load {ca_file} as a CA bundle: {why}") from None


def _anchor_paths(settings: Settings, base: Path) -> Settings:
    def anchor(p: str) -> str:
        return p if not p or os.path.isabs(p) else str(base / p)

    targets = dataclasses.replace(settings.targets, ca_file=anchor(settings.targets.ca_file))
    daemon = dataclasses.replace(settings.daemon, sources=tuple(anchor(s) for s in settings.daemon.sources))
    return dataclasses.replace(settings, state_dir=anchor(settings.state_dir), targets=targets, daemon=daemon)


def describe() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every setting: the config reference's source."""
    return [(section, f.name, default, f.metadata["doc"]) for section, f, _, default in _every_key()]


def _every_key() -> list[tuple[str, dataclasses.Field, Any, Any]]:
    """(section or "", field, type, default) for every key, in declaration order; a sub-table
    field (``[probes.<name>]``) gives one section per registered probe, with its defaults."""
    from .probes import REGISTRY  # late: the probes import this module

    rows: list[tuple[str, dataclasses.Field, Any, Any]] = []
    for f in dataclasses.fields(Settings):
        if f.name in SECTIONS:
            cls = _section_type(f.name)
            for sf in dataclasses.fields(cls):
                sub = sf.metadata.get("subtables")
                if sub is None:
                    rows.append((f.name, sf, _field_types(cls)[sf.name], _default(sf)))
                    continue
                if sub is ServiceBudget:
                    from .guard import DOCUMENTED

                    rows += [(f"{f.name}.{service}", kf, _field_types(sub)[kf.name], documented[i])
                             for service, documented in DOCUMENTED.items()
                             for i, kf in enumerate(dataclasses.fields(sub))]
                    continue
                for spec in REGISTRY:
                    rows += [(f"{f.name}.{spec.name}", kf, _field_types(sub)[kf.name], getattr(spec, kf.name))
                             for kf in dataclasses.fields(sub)]
        elif f.name not in _NOT_KEYS:
            rows.append(("", f, _field_types(Settings)[f.name], _default(f)))
    return rows


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def reference_markdown() -> str:
    """The config reference table of docs/configuration.md, generated so it cannot drift from the code."""
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for section, f, typ, default in _every_key():
        name = f"[{section}].{f.name}" if section else f.name
        if isinstance(default, tuple):
            text = "[]" if not default else "[" + ", ".join(f'"{d}"' for d in default) + "]"
        elif isinstance(default, str):
            text = f'"{default}"'
        else:
            text = repr(default)
        if len(text) > 60:
            text = text[:57] + "..."
        rows.append(f"| `{name}` | `{text}` | {allowed(typ, f.metadata)} | {f.metadata['doc']} |")
        if section == "targets" and f.name == "ban":
            rows += [f"| `[[targets.ban]].{k}` | | {ok} | {doc} |" for k, ok, doc in bans.ENTRY_KEYS]
    related = "; ".join(f"`[{a[0]}].{a[1]}` {'≤' if op == '<=' else '≥'} `[{b[0]}].{b[1]}`" for a, op, b in RELATIONS)
    return "\n".join(rows) + f"\n\nKeys that relate must agree: {related}."
