"""What a request's query string and path may hold: one parser for every route of the endpoint.

Rules:
1. A number is ASCII digits only. ``str.isdigit()`` and ``int()`` also take ``²``, ``①`` and
   ``١`` (``int("١") == 1``, ``int("²")`` raises): so ``isdecimal() and isascii()``, at most
   ``MAX_DIGITS`` digits, then the route's own bounds. Anything else is ``BadParameter`` naming
   the parameter and what it takes.
2. No query value (or name) and no path parameter (``/lease/{id}/release``) holds a control
   character: none belongs in a filter or an id, and PostgreSQL refuses NUL in text, which would
   be a 500 (``plain_text``, for every route).
3. A ``BadParameter`` is the client's mistake: the API answers 400 JSON ``bad_request``, the
   page 400 text, and a path id that is not a number we could have stored answers 404.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_DIGITS = 19  # 2**63 - 1, the largest signed 64-bit id (SQLite INTEGER, PostgreSQL bigint), has 19


class BadParameter(ValueError):
    """A query or path parameter the route cannot take; ``str()`` is the sentence the client sees."""


def number(text: str | None, name: str, low: int, high: int, default: int | None = None) -> int:
    """``text`` as a whole number from ``low`` to ``high`` (rule 1); ``default`` when it is
    missing or empty and a default is given."""
    if not text and default is not None:
        return default
    text = text or ""
    if not (text.isascii() and text.isdecimal() and len(text) <= MAX_DIGITS) or not low <= int(text) <= high:
        raise BadParameter(f"{name}: a whole number from {low} to {high} in ASCII digits, not {_shown(text)}")
    return int(text)


def plain_text(params: Mapping[str, str]) -> None:
    """Rule 2 for every name and value of ``params`` (a query, or a route's ``match_info``)."""
    for name, value in params.items():
        for part, what in ((name, "parameter name"), (value, name)):
            bad = next((c for c in part if ord(c) < 32 or ord(c) == 127), None)
            if bad is not None:
                raise BadParameter(f"{_shown(what)}: control character {bad!r} in the query string")


def _shown(text: str) -> str:
    return repr(text[:20]) + ("..." if len(text) > 20 else "")


__all__ = ["MAX_DIGITS", "BadParameter", "number", "plain_text"]
