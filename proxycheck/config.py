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

Where things are: the sections (``config_sections.py``), ``[targets]`` built from the probes'
specs (``config_targets.py``), the generated reference (``config_reference.py``); this module
loads and checks a file, and re-exports the public names of all three.

Adding a key: one ``key(...)`` line in its section's dataclass (a new section also needs a
``Settings`` field and a ``SECTIONS`` entry; a ``[targets]`` key is a ``TargetSpec`` in the
probe that fetches it), a line in ``proxycheck.example.toml`` if users should see it, then
``python tests/unit/test_config.py`` to regenerate docs/configuration.md (and the example's
``[targets]`` keys).
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import stat
import tomllib
from pathlib import Path
from typing import Any

from . import bans, geo, probes
from .config_keys import check_fields, coerce
from .config_reference import describe, reference_markdown
from .config_sections import (MIN_TOKEN_LENGTH, RELATIONS, SECTIONS, STRATEGIES, Check, Daemon, Geo, Guard, Http, Probes,
                              ServiceBudget, Settings, Solver, Timeouts, Worker, _field_types, _fields, _known_top,
                              _section_type)
from .config_targets import Targets, TargetsBase, judge_targets, judge_targets_toml, targets_class
from .errors import ConfigError
from .health import HealthPolicy
from .notify import settings as notify_settings
from .notify.settings import Notify
from .target_spec import ProbeSchedule, url_check

DEFAULT_CONFIG_FILE = "proxycheck.toml"

__all__ = [
    "DEFAULT_CONFIG_FILE", "MIN_TOKEN_LENGTH", "RELATIONS", "SECTIONS", "STRATEGIES", "Check", "Daemon", "Geo", "Guard",
    "HealthPolicy", "ServiceBudget",
    "Http", "ProbeSchedule", "Probes", "Settings", "Solver", "Targets", "Timeouts", "Worker", "check_worker", "describe",
    "find_config_file", "judge_targets", "judge_targets_toml", "load_settings", "read_toml", "reference_markdown",
    "settings_from_dict", "targets_class",
]


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
        _check_secret_file(path, "[http].token", "the HTTP token", "($PROXYCHECK_TOKEN, or no token: one is generated in "
                           "<state_dir>/http-token)")
    if path is not None and settings.notify.secret:
        _check_secret_file(path, "[notify].secret", "the webhook's secret", "([notify].secret_file)")
    if path is not None and settings.notify.apprise_urls:
        _check_secret_file(path, "[notify].apprise_urls", "Apprise URLs (their tokens)", "")
    # Relative paths in the file are relative to the file, so systemd and a shell agree.
    if path is not None:
        settings = _anchor_paths(settings, path.parent)
        _check_ca_file(settings.targets.ca_file, f"{path}: [targets].ca_file")
    geo.check_settings(settings.geo, f"{path or 'defaults'}: [geo]")
    notify_settings.check(settings.notify, f"{path or 'defaults'}: [notify]")
    env_url = environ.get("PROXYCHECK_DATABASE_URL")
    if env_url:
        url = _value(Settings, "database_url", env_url, "environment: PROXYCHECK_DATABASE_URL")
        settings = dataclasses.replace(settings, database_url=url)
    return dataclasses.replace(settings, source_file=str(path) if path else None)


def _check_secret_file(path: Path, key: str, what: str, elsewhere: str) -> None:
    """A config file holding ``key`` (a secret: ``what``) that others can read is refused, as the
    token file is (filemodes.py rule 4); ``elsewhere`` says where else the secret can be kept."""
    from .filemodes import open_to_others

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if open_to_others(mode):
        raise ConfigError(f"{path}: {key}: the file holds {what} and is readable by every user "
                          f"(mode {stat.filemode(mode)}): run `chmod o-rwx {path}`" + (f", or take it out of the file {elsewhere}"
                                                                               if elsewhere else ""))


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
        if issubclass(cls, TargetsBase) and name == "ban":  # an array of tables, not a key of one type
            if "ban_url" in table:
                raise ConfigError(f"{where}ban_url: give either ban_url or [[targets.ban]] tables, not both "
                                  "(ban_url is shorthand for one entry with preset = \"recaptcha\")")
            values[name] = bans.parse_entries(value, f"{where}ban", url_check("http", "https"))
            continue
        if issubclass(cls, TargetsBase) and name == "judge_urls":
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
    specs = {spec.name: spec for spec in probes.REGISTRY}
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
    notify = dataclasses.replace(settings.notify, secret_file=anchor(settings.notify.secret_file))
    geo_files = dataclasses.replace(settings.geo, database=anchor(settings.geo.database),
                                    asn_database=anchor(settings.geo.asn_database))
    return dataclasses.replace(settings, state_dir=anchor(settings.state_dir), targets=targets, daemon=daemon,
                               notify=notify, geo=geo_files)


