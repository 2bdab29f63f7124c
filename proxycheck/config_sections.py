"""The settings' sections: one frozen dataclass per ``[section]``, each key one ``key(...)`` line.

``config.py`` loads a file into these (and re-exports them); ``config_reference.py`` documents
them; ``config_targets.py`` builds ``[targets]`` from the probe registry. ``RELATIONS`` lists
the keys that must agree.
"""

from __future__ import annotations

import dataclasses
import socket
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_keys import key, shown
from .config_targets import Targets, targets_class
from .errors import StorageError
from .health import HealthPolicy
from .notify.settings import Notify
from .sticky import DEFAULT_WINDOW
from .target_spec import ProbeSchedule

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
class Timeouts:
    connect: float = key("seconds for the TCP connect to the proxy", 5.0, low=0.1, high=600)
    read: float = key("seconds to wait for each answer through the proxy", 10.0, low=0.1, high=600)
    probe: float = key("hard deadline per probe, whatever hangs (SOCKS handshakes included)", 25.0, low=0.1, high=3600)


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


def _solver_service(value: str) -> str | None:
    from .solver_addresses import check_service

    return check_service(value)


def _vantage_name(value: str) -> str | None:
    if value and (value != value.strip() or len(value) > 64 or "=" in value):
        return f"{shown(value)} is not a vantage name (at most 64 characters, no '=' or surrounding spaces)"
    return None


def _source_address(value: str) -> str | None:
    """An IP address this machine has: connections to proxies are bound to it (vantage.py)."""
    if not value:
        return None
    from .vantage import bind_problem  # the one check, shared with [check].vantages

    return bind_problem(value)


def _extra_vantage(value: str) -> str | None:
    name, sep, address = value.partition("=")
    if not sep or not name.strip() or _vantage_name(name.strip()):
        return f"{shown(value)} is not NAME=ADDRESS (e.g. second=192.0.2.7)"
    return _source_address(address.strip()) or (None if address.strip() else f"{shown(value)} has no address")


@dataclass(frozen=True)
class Check:
    concurrency: int = key("proxies checked at once", 50, low=1, high=10_000)
    vantage: str = key("this checker's vantage point, stored with every check: daemons on one database with different "
                       "names compare what each sees (empty: the host name)", "", check=_vantage_name,
                       accepts="a name, at most 64 characters")
    source_address: str = key("local IP address the connections to proxies leave from (empty: the kernel's choice); "
                              "must be an address of this machine", "", check=_source_address,
                              accepts="an IP address of this machine")
    vantages: tuple[str, ...] = key(
        "more vantages on this machine, as NAME=ADDRESS: each check also asks the proxy for one request from each "
        "address (its reachability and login, not the whole suite), so an IP-locked proxy is named (ip_locked)",
        (), check=_extra_vantage, accepts="NAME=IP entries, each IP an address of this machine")

    @property
    def vantage_name(self) -> str:
        return self.vantage or socket.gethostname()


@dataclass(frozen=True)
class Solver:
    """The captcha services your workers hand proxies to (solver_addresses.py, docs/vantage.md)."""

    services: tuple[str, ...] = key("captcha services your workers use: an ip_locked verdict lists their published "
                                    "source addresses for your provider's allow-list", (), check=_solver_service,
                                    accepts="anti-captcha, capmonster, capsolver, 2captcha")
    allow_ip_locked: bool = key("hand out proxies found IP-locked (ip_locked); set it only once your services' "
                                "addresses are on your provider's allow-list", False)


@dataclass(frozen=True)
class Daemon:
    sources: tuple[str, ...] = key("CSV files of proxies, synced at start, on SIGHUP and every sync_interval", (),
                                   check=_path)
    sync_interval: float = key("seconds between re-reads of the source files", 300.0, low=1, high=86400)
    dispatch_interval: float = key("longest wait between looks for due proxies (sooner while more are due: "
                                   "then a look comes as soon as an eighth of the slots is free)", 1.0, low=0.01, high=60)
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
class Geo:
    """Where exits are (geo.py, README "Where the exit is"): offline MaxMind-format databases,
    never downloaded by proxycheck. Empty ``database``: no lookups, no ``geo_mismatch``."""

    database: str = key("path to a .mmdb file with countries (GeoLite2-Country or -City, DB-IP IP to Country Lite), "
                        "or with countries and ASNs in one file (IPinfo Lite); empty: exits are not located", "",
                        accepts="a path to a .mmdb file, or empty")
    asn_database: str = key("path to a separate .mmdb file with ASNs (GeoLite2-ASN, DB-IP IP to ASN Lite); empty: "
                            "ASNs are read from database", "", accepts="a path to a .mmdb file, or empty")


@dataclass(frozen=True)
class Settings:
    database_url: str = key("SQLAlchemy URL, SQLite or PostgreSQL; empty = SQLite in state_dir", "",
                            check=_database_url, accepts="sqlite:///FILE or postgresql://...", secret=True)
    state_dir: str = key("directory for the SQLite database and lock file", "./state", check=_path)
    targets: Targets = field(default_factory=lambda: targets_class()())
    timeouts: Timeouts = field(default_factory=Timeouts)
    probes: Probes = field(default_factory=Probes)
    check: Check = field(default_factory=Check)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    daemon: Daemon = field(default_factory=Daemon)
    http: Http = field(default_factory=Http)
    worker: Worker = field(default_factory=Worker)
    guard: Guard = field(default_factory=Guard)
    solver: Solver = field(default_factory=Solver)
    notify: Notify = field(default_factory=Notify)
    geo: Geo = field(default_factory=Geo)
    source_file: str | None = None  # where the settings came from (not a key)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.state_dir).resolve() / 'proxycheck.db'}"


SECTIONS = ("targets", "timeouts", "probes", "check", "health", "daemon", "http", "worker", "guard", "solver", "notify",
            "geo")
_NOT_KEYS = {"source_file"}


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


def _section_type(name: str) -> type:
    if name == "targets":  # built from the registry as it is now (config_targets.py rule 1)
        return targets_class()
    return _field_types(Settings)[name]


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _known_top() -> list[str]:
    return sorted(k for k in _fields(Settings) if k not in SECTIONS and k not in _NOT_KEYS)
