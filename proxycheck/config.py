"""Configuration: one TOML file, validated at load, passed down as a frozen ``Settings``.

Rules:
1. Every section is a frozen dataclass whose fields are the keys, with typed defaults; the
   README's config reference is generated from the same field docs (``describe()``).
2. An unknown key or a value of the wrong type is a ``ConfigError`` naming ``[section].key``.
3. Precedence: built-in defaults < file (``--config``, else ``$PROXYCHECK_CONFIG``, else
   ``./proxycheck.toml`` if present) < environment (``PROXYCHECK_DATABASE_URL``) < flags.
4. No globals: whoever needs settings receives them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .health import HealthPolicy

DEFAULT_CONFIG_FILE = "proxycheck.toml"

# Google's public test site key: a reCAPTCHA URL any IP may fetch unless Google bans it.
_RECAPTCHA_ANCHOR = (
    "https://www.google.com/recaptcha/api2/anchor?ar=1&k=6LeIxAcTAAAAAJcZVRqyHh4o8iZ5XYZwTqXCDjR7T"
    "&co=aHR0cHM6Ly93d3cuZ29vZ2xlLmNvbTo0NDM.&hl=en&size=normal"
)


def _doc(text: str, **kw: Any) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class Targets:
    judge_url: str = _doc("plain-HTTP header echo (httpbin /get JSON or azenv text)", default="http://httpbin.org/get")
    ip_url: str = _doc("direct IP echo: the checker's own public IP", default="https://api.ipify.org/?format=json")
    ssl_url: str = _doc("HTTPS URL fetched through a CONNECT tunnel (TLS verified)", default="https://www.google.com/generate_204")
    image_urls: tuple[str, ...] = _doc(
        "images downloaded through the proxy (status, type, magic bytes, length)",
        default=(
            "http://www.google.com/images/branding/googlelogo/1x/googlelogo_color_272x92dp.png",
            "https://www.gstatic.com/recaptcha/api2/logo_48.png",
        ),
    )
    long_get_url: str = _doc("plain-HTTP URL that answers 200 to a long query string", default="http://httpbin.org/get")
    ban_url: str = _doc("target whose ban pages are recognised (429, /sorry/, unusual traffic)", default=_RECAPTCHA_ANCHOR)
    ca_file: str = _doc("extra CA bundle (PEM) trusted besides the system's", default="")


@dataclass(frozen=True)
class Timeouts:
    connect: float = _doc("seconds for the TCP connect to the proxy", default=5.0)
    read: float = _doc("seconds to wait for each answer through the proxy", default=10.0)
    probe: float = _doc("hard deadline per probe, whatever hangs (SOCKS handshakes included)", default=25.0)


@dataclass(frozen=True)
class Probes:
    long_get_bytes: int = _doc("minimum length of the long GET's request line", default=2048)
    image_max_bytes: int = _doc("largest image body accepted", default=5_000_000)
    user_agent: str = _doc(
        "User-Agent sent through proxies",
        default="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
    )


@dataclass(frozen=True)
class Check:
    concurrency: int = _doc("proxies checked at once", default=50)


@dataclass(frozen=True)
class Daemon:
    sources: tuple[str, ...] = _doc("CSV files of proxies, synced at start, on SIGHUP and every sync_interval", default=())
    sync_interval: float = _doc("seconds between re-reads of the source files", default=300.0)
    dispatch_interval: float = _doc("seconds between looks for due proxies", default=1.0)
    lease_seconds: float = _doc("how long a claimed proxy stays ours before another daemon may take it", default=180.0)
    drain_grace: float = _doc("seconds SIGTERM waits for in-flight checks before cancelling them", default=20.0)
    own_ip_interval: float = _doc("seconds between refreshes of the checker's own IP", default=600.0)
    heartbeat_interval: float = _doc(
        "seconds between direct requests to the judge (a dead judge stops all judging within this) and between "
        "the daemon's heartbeats; failures wait for a self-test at most this long", default=5.0)
    retention_interval: float = _doc("seconds between history clean-ups", default=3600.0)
    keep_checks_per_proxy: int = _doc("history rows always kept per proxy", default=20)
    keep_success_days: float = _doc("days successful checks beyond those are kept (0.25: the last 6 hours)", default=0.25)
    keep_failure_days: float = _doc("days failed checks and worker reports beyond those are kept", default=3.0)


@dataclass(frozen=True)
class Http:
    enabled: bool = _doc("serve the worker HTTP endpoint from `proxycheck run`", default=False)
    listen: str = _doc("HOST:PORT to bind (keep it on loopback or a private network)", default="127.0.0.1:8181")
    token: str = _doc("if set, every request needs `Authorization: Bearer <token>` (/healthz excepted)", default="")


STRATEGIES = ("random", "round_robin", "least_used", "fastest")


@dataclass(frozen=True)
class Worker:
    """How ``get_healthy_proxy()`` chooses and how ``report()`` acts. A proxy is handed out iff
    it is enabled, healthy, and its last successful check is at most ``max_age`` seconds old.
    Reports may take out ``max(1, floor(enabled × max_reported_percent / 100))`` proxies per
    ``report_window`` seconds."""

    max_age: float = _doc("seconds: a proxy whose last successful check is older is never handed out "
                          "(default 3 × [health].interval)", default=900.0)
    strategy: str = _doc("default strategy: random, round_robin, least_used or fastest", default="random")
    snapshot_seconds: float = _doc(
        "seconds each worker process reuses its list of healthy proxies; every hand-out is re-read, so this "
        "only delays newly healthy ones (0: query every call)", default=2.0)
    reprobe_after: float = _doc("seconds after a worker reports a proxy error until the daemon re-checks it", default=15.0)
    max_reported_percent: float = _doc("most of the enabled pool (percent, at least 1 proxy) reports may take out per window",
                                       default=10.0)
    report_window: float = _doc("seconds of the guard rail's window", default=300.0)


@dataclass(frozen=True)
class Settings:
    database_url: str = _doc("SQLAlchemy URL; empty = SQLite in state_dir", default="")
    state_dir: str = _doc("directory for the SQLite database and lock file", default="./state")
    targets: Targets = field(default_factory=Targets)
    timeouts: Timeouts = field(default_factory=Timeouts)
    probes: Probes = field(default_factory=Probes)
    check: Check = field(default_factory=Check)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    daemon: Daemon = field(default_factory=Daemon)
    http: Http = field(default_factory=Http)
    worker: Worker = field(default_factory=Worker)
    source_file: str | None = None  # where the settings came from (not a key)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.state_dir).resolve() / 'proxycheck.db'}"


SECTIONS = ("targets", "timeouts", "probes", "check", "health", "daemon", "http", "worker")
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
    # Relative paths in the file are relative to the file, so systemd and a shell agree.
    if path is not None:
        settings = _anchor_paths(settings, path.parent)
    env_url = environ.get("PROXYCHECK_DATABASE_URL")
    if env_url:
        settings = dataclasses.replace(settings, database_url=env_url)
    return dataclasses.replace(settings, source_file=str(path) if path else None)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (create it from proxycheck.example.toml)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def settings_from_dict(data: dict[str, Any], origin: str) -> Settings:
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: [{key}] must be a table")
            top[key] = _build(_section_type(key), value, f"{origin}: [{key}]")
        elif key in _fields(Settings) and key not in SECTIONS and key not in _NOT_KEYS:
            top[key] = _coerce(_field_types(Settings)[key], value, f"{origin}: {key}")
        else:
            raise ConfigError(f"{origin}: unknown key {key!r} (known: {', '.join(_known_top())})")
    settings = Settings(**top)
    if "max_age" not in data.get("worker", {}):  # follows the check interval unless set
        settings = dataclasses.replace(settings, worker=dataclasses.replace(settings.worker, max_age=3 * settings.health.interval))
    _validate(settings, origin)
    return settings


def _section_type(name: str) -> type:
    return _field_types(Settings)[name]


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _known_top() -> list[str]:
    return sorted(k for k in _fields(Settings) if k not in _NOT_KEYS)


def _build(cls: type, table: dict[str, Any], where: str) -> Any:
    types = _field_types(cls)
    values = {}
    for key, value in table.items():
        if key not in types:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(types))})")
        values[key] = _coerce(types[key], value, f"{where}.{key}")
    return cls(**values)


def _coerce(typ: Any, value: Any, where: str) -> Any:
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{where}: must not be negative, got {value!r}")
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{where}: must not be negative, got {value!r}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if typ is str or typ == (str | None):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if typing.get_origin(typ) is tuple:
        if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{where}: unsupported setting type {typ}")  # pragma: no cover - our bug


def _validate(settings: Settings, origin: str) -> None:
    t = settings.targets
    for key in ("judge_url", "long_get_url"):
        _require_url(getattr(t, key), ("http",), f"{origin}: [targets].{key}")
    _require_url(t.ip_url, ("http", "https"), f"{origin}: [targets].ip_url")
    _require_url(t.ssl_url, ("https",), f"{origin}: [targets].ssl_url")
    _require_url(t.ban_url, ("http", "https"), f"{origin}: [targets].ban_url")
    for url in t.image_urls:
        _require_url(url, ("http", "https"), f"{origin}: [targets].image_urls")
    for key in ("connect", "read", "probe"):
        if getattr(settings.timeouts, key) <= 0:
            raise ConfigError(f"{origin}: [timeouts].{key} must be greater than 0")
    if not settings.daemon.heartbeat_interval > 0:
        raise ConfigError(f"{origin}: [daemon].heartbeat_interval must be greater than 0")
    if settings.check.concurrency < 1:
        raise ConfigError(f"{origin}: [check].concurrency must be at least 1")
    if settings.probes.long_get_bytes > 65536:
        raise ConfigError(f"{origin}: [probes].long_get_bytes must be at most 65536")
    host, sep, port = settings.http.listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{origin}: [http].listen {settings.http.listen!r} is not HOST:PORT")
    check_worker(settings.worker, f"{origin}: ")
    if settings.database_url and "://" not in settings.database_url:
        raise ConfigError(f"{origin}: database_url {settings.database_url!r} is not a URL (e.g. sqlite:///path.db)")


def check_worker(w: Worker, where: str = "") -> None:
    """The ``[worker]`` checks the types cannot express (also run on a ``WorkerSettings`` built in code)."""
    for key in ("max_age", "report_window"):
        if getattr(w, key) <= 0:
            raise ConfigError(f"{where}[worker].{key} must be positive (seconds), not {getattr(w, key):g}")
    for key in ("snapshot_seconds", "reprobe_after"):
        if getattr(w, key) < 0:
            raise ConfigError(f"{where}[worker].{key} must not be negative, not {getattr(w, key):g}")
    if not 0 < w.max_reported_percent <= 100:
        raise ConfigError(f"{where}[worker].max_reported_percent must be in (0, 100], not {w.max_reported_percent:g}")
    if w.strategy not in STRATEGIES:
        raise ConfigError(f"{where}[worker].strategy {w.strategy!r} is not one of {', '.join(STRATEGIES)}")


def _require_url(url: str, schemes: tuple[str, ...], where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{where}: {url!r} is not a {' or '.join(s + '://' for s in schemes)} URL")


def _anchor_paths(settings: Settings, base: Path) -> Settings:
    def anchor(p: str) -> str:
        return p if not p or os.path.isabs(p) else str(base / p)

    targets = dataclasses.replace(settings.targets, ca_file=anchor(settings.targets.ca_file))
    daemon = dataclasses.replace(settings.daemon, sources=tuple(anchor(s) for s in settings.daemon.sources))
    return dataclasses.replace(settings, state_dir=anchor(settings.state_dir), targets=targets, daemon=daemon)


def describe() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every setting: the config reference's source."""
    rows: list[tuple[str, str, Any, str]] = []
    for f in dataclasses.fields(Settings):
        if f.name in _NOT_KEYS:
            continue
        if f.name in SECTIONS:
            section_cls = _section_type(f.name)
            for sf in dataclasses.fields(section_cls):
                rows.append((f.name, sf.name, _default(sf), sf.metadata.get("doc", "")))
        else:
            rows.append(("", f.name, _default(f), f.metadata.get("doc", "")))
    return rows


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def reference_markdown() -> str:
    """The README's config reference table, generated so it cannot drift from the code."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for section, key, default, doc in describe():
        name = f"[{section}].{key}" if section else key
        if isinstance(default, tuple):
            shown = "[]" if not default else "[" + ", ".join(f'"{d}"' for d in default) + "]"
        elif isinstance(default, str):
            shown = f'"{default}"'
        else:
            shown = repr(default)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        rows.append(f"| `{name}` | `{shown}` | {doc} |")
    return "\n".join(rows)
