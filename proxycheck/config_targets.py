"""The ``[targets]`` section, built from the probe registry, and the one rendering of it for a judge.

Rules:
1. Every ``[targets]`` key is declared once, by the probe that fetches it (``ProbeSpec.targets``,
   ``target_spec.TargetSpec``), plus the two keys no probe owns (``OWN``: the self-test's IP
   echo and the CA bundle). ``targets_class()`` makes the section's frozen dataclass from them, in
   registry order, so the loader, ``config check``, ``config describe`` and the reference all
   see a new probe's key the moment it is in ``probes.REGISTRY``.
2. ``judge_targets(http, https)`` is the only place that knows what ``[targets]`` pointing at a
   ``proxycheck judge`` looks like (each spec's ``offline``); the demo, the test world and the
   benches render their configs with ``judge_targets_toml``.
3. ``ban_url`` and ``judge_url`` are shorthands for the first entry of their lists; the section's
   ``urls(key)`` gives what the probes fetch for one key.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import bans, probes
from .config_keys import key
from .target_spec import TargetSpec, url_key

OWN = (
    TargetSpec("ip_url", "https://api.ipify.org/?format=json", "direct IP echo: the checker's own public IP",
               offline=("{http}/ip",)),
)
CA_FILE_DOC = "extra CA bundle (PEM) trusted besides the system's; must load at start"


class TargetsBase:
    """What every ``[targets]`` section answers, whichever keys the registry declares."""

    judge_url: str
    judge_urls: tuple[str, ...]
    ban_url: str
    ban: tuple[bans.BanTarget, ...]

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


def target_specs() -> tuple[TargetSpec, ...]:
    """Every ``[targets]`` key's spec: the registered probes' in registry order, then ``OWN``."""
    specs = {t.key: t for spec in probes.REGISTRY for t in spec.targets}
    return (*specs.values(), *OWN)


def targets_class() -> type:
    """The ``[targets]`` dataclass for the registry as it is now (rule 1)."""
    return _make(target_specs())


@lru_cache(maxsize=8)
def _make(specs: tuple[TargetSpec, ...]) -> type:
    fields: list[tuple[str, Any, Any]] = []
    for t in specs:
        if t.tables:
            fields.append((t.key, tuple[bans.BanTarget, ...], key(t.doc, t.default, accepts=f"[[targets.{t.key}]] tables")))
        else:
            typ = tuple[str, ...] if isinstance(t.default, tuple) else str
            fields.append((t.key, typ, url_key(t.doc, t.default, *t.schemes)))
    fields.append(("ca_file", str, key(CA_FILE_DOC, "")))
    cls = dataclasses.make_dataclass("Targets", fields, bases=(TargetsBase,), frozen=True)
    cls.__module__ = __name__
    return cls


Targets = targets_class()  # the section for the built-in registry (for type annotations)


def judge_targets(http: str, https: str, ca_file: str | Path | None = None, *,
                  ban_presets: dict[str, str] | None = None) -> dict[str, Any]:
    """``[targets]`` pointing every key at a judge serving plain HTTP at ``http`` and TLS at
    ``https`` (base URLs), as a TOML-ready dict. ``ban_presets`` (preset -> judge path, e.g.
    ``judge_routes.PRESET_ROUTES``) gives one ``[[targets.ban]]`` table per preset instead of
    ``ban_url``."""
    table: dict[str, Any] = {}
    for t in target_specs():
        value = t.offline_value(http, https)
        if value is not None and not (ban_presets and t.key == "ban_url"):
            table[t.key] = value
    if ca_file is not None:
        table["ca_file"] = str(ca_file)
    if ban_presets:
        table["ban"] = [{"name": p, "url": https + path, "preset": p} for p, path in ban_presets.items()]
    return table


def judge_targets_toml(http: str, https: str, ca_file: str | Path | None = None, *,
                       ban_presets: dict[str, str] | None = None) -> str:
    """``judge_targets`` as a TOML ``[targets]`` table (and its ``[[targets.ban]]`` tables)."""
    return targets_toml(judge_targets(http, https, ca_file, ban_presets=ban_presets))


def example_toml() -> str:
    """The ``[targets]`` keys as proxycheck.example.toml shows them (each spec's ``example``),
    between its markers; ``python tests/unit/test_config.py`` regenerates them."""
    lines = []
    for t in target_specs():
        if t.tables:
            continue
        value = t.default if t.example in (None, "") else t.example
        text = _toml_value(value)
        if isinstance(value, tuple) and len(text) > 80:
            text = "[\n" + "".join(f"  {json.dumps(v)},\n" for v in value) + "]"
        lines.append(("# " if t.example == "" else "") + f"{t.key} = {text}")
    return "\n".join([*lines, 'ca_file = ""'])


def _toml_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def targets_toml(table: dict[str, Any]) -> str:
    """A ``[targets]`` dict (``judge_targets``'s shape) as TOML text, ending with a newline."""
    lines = ["[targets]", *(f"{name} = {_toml_value(value)}" for name, value in table.items() if name != "ban")]
    for entry in table.get("ban", ()):
        lines += ["", "[[targets.ban]]", *(f"{k} = {_toml_value(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n"
