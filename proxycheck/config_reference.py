"""The configuration reference, generated from the key declarations so it cannot drift.

``describe()`` lists (section, key, default, doc) for every setting (``config describe``);
``reference_markdown()`` is the table between the markers in docs/configuration.md (``python
tests/unit/test_config.py`` regenerates it). A ``[probes.<name>]`` section appears once per
registered probe, and ``[targets]`` holds the keys the registry declares (config_targets.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import bans, probes
from .config_keys import allowed
from .config_sections import _NOT_KEYS, RELATIONS, SECTIONS, ServiceBudget, Settings, _field_types, _section_type


def describe() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every setting: the config reference's source."""
    return [(section, f.name, default, f.metadata["doc"]) for section, f, _, default in _every_key()]


def _every_key() -> list[tuple[str, dataclasses.Field, Any, Any]]:
    """(section or "", field, type, default) for every key, in declaration order; a sub-table
    field (``[probes.<name>]``) gives one section per registered probe, with its defaults."""
    rows: list[tuple[str, dataclasses.Field, Any, Any]] = []
    for f in dataclasses.fields(Settings):
        if f.name in SECTIONS:
            cls = _section_type(f.name)
            for sf in dataclasses.fields(cls):
                sub = sf.metadata.get("subtables")
                if sub is None:
                    rows.append((f.name, sf, _field_types(cls)[sf.name], _default(sf)))
                    continue
                if sub is ServiceBudget:  # [guard.<service>]: one section per documented service
                    from .guard import DOCUMENTED

                    rows += [(f"{f.name}.{service}", kf, _field_types(sub)[kf.name], documented[i])
                             for service, documented in DOCUMENTED.items()
                             for i, kf in enumerate(dataclasses.fields(sub))]
                    continue
                for spec in probes.REGISTRY:
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
