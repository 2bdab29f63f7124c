"""How a config key is declared and checked: one ``key(...)`` per setting, read by everyone.

Rules:
1. A key is a dataclass field made by ``key(doc, default, ...)``. Its type is the annotation; its
   default, one-line doc and allowed values (``low``/``high`` inclusive, or ``above`` for an
   exclusive lower bound; ``choices``; a ``check`` function for URLs and the like) sit in the
   field's metadata. The TOML loader, the checks on sections built in code (``HealthPolicy``,
   ``WorkerSettings``) and the reference in docs/configuration.md all read that one declaration.
2. Every number has a range, and must be finite and inside it: ``nan`` and ``inf`` are never
   settings. A bool is never taken for a number, nor a number for a bool.
3. Strings carry no control characters: they end up in HTTP headers, URLs and file names.
4. Every error is ``ConfigError("<where>: <what was expected>, got <value>")``, ``where``
   naming the key (``f.toml: [health].interval``).

This module imports nothing of proxycheck but ``errors``, so ``health.py`` can use it too.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

# A check returns None when the value is fine, else what is wrong with it, naming the value as it
# may be shown ("'ftp://x' is not a http:// URL").
Validator = Callable[[Any], "str | None"]


def key(
    doc: str,
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    check: Validator | None = None,
    accepts: str = "",
    secret: bool = False,
) -> Any:
    """A settings field: ``doc`` for the reference, the allowed values for every check.
    ``accepts`` says in words what ``check`` lets through (for the reference); ``secret`` keys
    (tokens, URLs with passwords) never show their value in an error."""
    meta = {"doc": doc, "low": low, "high": high, "above": above, "choices": choices, "check": check,
            "accepts": accepts, "secret": secret}
    return dataclasses.field(default=default, metadata=meta)


def coerce(typ: Any, value: Any, meta: typing.Mapping[str, Any], where: str) -> Any:
    """``value`` as read from TOML, converted to ``typ`` and checked; ``ConfigError`` otherwise."""
    if typ is float or typ is int:
        return _number(typ, value, meta, where)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {shown(value, meta)}")
        return value
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {shown(value, meta)}")
        return _string(value, meta, where)
    if typing.get_origin(typ) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {shown(value, meta)}")
        return tuple(_string(v, meta, where) for v in value)
    raise ConfigError(f"{where}: unsupported setting type {typ}")  # pragma: no cover - our bug


def check_fields(obj: Any, prefix: str) -> None:
    """Check every field of a section built in code (``prefix`` + name is the key's name)."""
    types = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if "doc" in f.metadata:
            coerce(types[f.name], getattr(obj, f.name), f.metadata, f"{prefix}{f.name}")


def allowed(typ: Any, meta: typing.Mapping[str, Any]) -> str:
    """What a key accepts, in words: ``a finite number between 1 and 86400``."""
    if typ is int or typ is float:
        noun = "a whole number" if typ is int else "a finite number"
        low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
        if above is not None:
            return f"{noun} greater than {above:g}" + (f" and at most {high:g}" if high is not None else "")
        if low is not None and high is not None:
            return f"{noun} between {low:g} and {high:g}"
        return noun + (f" of at least {low:g}" if low is not None else "")
    if meta.get("choices"):
        return "one of " + ", ".join(meta["choices"])
    return meta.get("accepts", "")


def _number(typ: type, value: Any, meta: typing.Mapping[str, Any], where: str) -> float | int:
    ok_type = isinstance(value, int) if typ is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        expected = "expected a whole number" if typ is int else "expected a number"
        raise ConfigError(f"{where}: {expected} ({allowed(typ, meta)}), got {shown(value, meta)}")
    low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
    inside = (
        math.isfinite(value)
        and (low is None or value >= low)
        and (above is None or value > above)
        and (high is None or value <= high)
    )
    if not inside:
        raise ConfigError(f"{where}: must be {allowed(typ, meta)}, got {shown(value)}")
    return typ(value)


def _string(value: str, meta: typing.Mapping[str, Any], where: str) -> str:
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ConfigError(f"{where}: control character {bad!r} in {shown(value, meta)}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {shown(value)}")
    check = meta.get("check")
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return value


def shown(value: Any, meta: typing.Mapping[str, Any] | None = None) -> str:
    """The offending value as the error shows it: shortened (a value can be huge), and never
    a secret key's value."""
    if meta and meta.get("secret"):
        return "a value not shown here (it is secret)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
