"""What callers pass in: keyword filters, HTTP query strings, references to a proxy.

Rule: every input is normalised here, once, into a ``Filters`` (store/eligibility.py, whose
constructor checks the values), a ``Proxy``, a strategy or a limit; anything malformed is a
``ValueError`` whose message names the parameter (an HTTP handler turns it into a 400). The
worker functions take either one ``Filters`` or its keywords (``FilterKeywords``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from ..errors import ProxyParseError
from ..proxy import Proxy, parse_proxy_url
from ..store.eligibility import MAX_ASN, Filters
from .settings import STRATEGIES

QUERY_KEYS = ("tags", "tag", "scheme", "anonymity", "exclude", "strategy", "target", "sticky", "service", "country", "asn")
PASSED_THROUGH = ("format", "local_test")  # the HTTP layer's own parameters
_NONE: tuple[str, ...] = ()
_NO_FILTERS = Filters()
MAX_LIMIT = 2**31 - 1  # get_healthy_proxies(limit=): more than any fleet, less than any SQL LIMIT


class FilterKeywords(TypedDict, total=False):
    """``make_filters``' keywords: what every worker function takes instead of a ``Filters``."""

    tags: str | Iterable[str]
    scheme: str | Iterable[str] | None
    anonymity: str | None
    exclude: Iterable[Proxy | str] | Proxy | str
    target: str | None
    sticky: bool
    service: str | None
    country: str | None
    asn: int | str | None


def as_filters(filters: Filters | None, keywords: Mapping[str, Any]) -> Filters:
    """The one ``Filters`` a worker function works with: the one given, or ``make_filters`` of
    the keywords (not both)."""
    if filters is None:
        return make_filters(**keywords)
    if not isinstance(filters, Filters):
        raise ValueError(f"filters: expected a Filters, got {type(filters).__name__}")
    if keywords:
        raise ValueError(f"{sorted(keywords)[0]}: pass filters as a Filters or as keywords, not both")
    return filters


def _names(name: str, value: Any, *, lower: bool = False) -> frozenset[str]:
    """A string (one) or an iterable of strings, stripped; anything else names ``name``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) and (isinstance(items, (bytes, Mapping))
                                                                   or not isinstance(items, Iterable)):
        raise ValueError(f"{name}: expected a string or a list of strings, got {value!r}")
    found = set()
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{name}: expected non-empty strings, got {item!r}")
        found.add(item.strip().lower() if lower else item)
    return frozenset(found)


def make_filters(
    *,
    tags: str | Iterable[str] = _NONE,
    scheme: str | Iterable[str] | None = None,
    anonymity: str | None = None,
    exclude: Iterable[Proxy | str] | Proxy | str = _NONE,
    target: str | None = None,
    sticky: bool = False,
    service: str | None = None,
    country: str | None = None,
    asn: int | str | None = None,
) -> Filters:
    """``tags``: all must match (a string is one tag). ``scheme``: one or several, matched exactly
    (``socks5`` does not match ``socks5h``). ``anonymity``: the minimum level
    (``anonymous`` < ``elite``). ``exclude``: proxies, URLs or keys already tried. ``service``:
    the captcha service the proxy is for; its error budget may refuse (guard.py). ``country``
    and ``asn`` (a number, or ``"AS3320"``): where the exit was observed to be ([geo])."""
    if (tags is _NONE and exclude is _NONE and scheme is None and anonymity is None and target is None
            and sticky is False and service is None and country is None and asn is None):
        return _NO_FILTERS  # the common call, per hand-out: nothing to check
    tag_set = _names("tags", tags)
    schemes = None if scheme is None else _names("scheme", scheme, lower=True)
    level = anonymity.strip().lower() if isinstance(anonymity, str) else anonymity
    if isinstance(exclude, (Proxy, str)):
        exclude = [exclude]
    if not isinstance(exclude, (list, tuple, set, frozenset)) and (isinstance(exclude, (bytes, Mapping))
                                                                    or not isinstance(exclude, Iterable)):
        raise ValueError(f"exclude: expected proxies, URLs or keys, got {exclude!r}")
    if isinstance(target, str):
        target = target.strip()
    if isinstance(asn, str):
        asn = as_number(asn)
    return Filters(tag_set, schemes, level, frozenset(proxy_key(e) for e in exclude), target=target, sticky=sticky,
                   service=service, country=country, asn=asn)


def as_number(text: str) -> int:
    """``"3320"`` or ``"AS3320"`` (any case) as an AS number: http_api/params.py's one number
    rule (ASCII digits, bounded), naming ``asn``."""
    from ..http_api.params import number

    digits = text.strip()
    digits = digits[2:] if digits[:2].upper() == "AS" else digits
    return number(digits, "asn", 1, MAX_ASN)


def check_strategy(strategy: Any) -> str:
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    return strategy


def check_limit(limit: Any) -> int | None:
    """``get_healthy_proxies(limit=)``: None (all) or a whole number from 0 to ``MAX_LIMIT``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: expected a whole number from 0 to {MAX_LIMIT} (or None: all), got {limit!r}")
    return limit


def proxy_key(ref: Proxy | str) -> str:
    """``Proxy.key`` (URL without password) of a ``Proxy``, a proxy URL or a key."""
    if isinstance(ref, Proxy):
        return ref.key
    if isinstance(ref, str):
        return proxy_from_reference(ref).key
    raise ValueError(f"exclude: expected proxies, URLs or keys, got {type(ref).__name__}")


def proxy_from_reference(ref: Any) -> Proxy:
    """A ``Proxy`` from what a worker sends back: a URL (masked or not) or a key, or a dict with
    ``url`` or ``key``. Only its identity matters (``report`` looks it up by key)."""
    if isinstance(ref, Proxy):
        return ref
    if isinstance(ref, Mapping):
        ref = ref.get("url") or ref.get("key") or ref.get("proxy")
    if not isinstance(ref, str):
        raise ValueError(f"proxy: expected a proxy URL or key, got {ref!r}")
    try:
        return parse_proxy_url(ref)
    except ProxyParseError as exc:
        raise ValueError(f"proxy: {exc}") from None


def filters_from_json(body: Mapping[str, Any]) -> dict[str, Any]:
    """``filters_from_query`` for a JSON object (``POST /lease``): the same keys, each a string,
    a list of strings or a boolean, so every filter the query string takes works here too."""
    from multidict import MultiDict

    if not isinstance(body, Mapping):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    pairs: list[tuple[str, str]] = []
    for name, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                item = "true" if item else "false"
            if not isinstance(item, (str, int, float)):
                raise ValueError(f"{name}: expected a string, a list of strings or a boolean, got {item!r}")
            pairs.append((str(name), str(item)))
    return filters_from_query(MultiDict(pairs))


def flag(name: str, text: str) -> bool:
    """A query string's boolean: 1/true/yes or 0/false/no (any case); anything else names ``name``."""
    value = text.strip().lower()
    if value not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    return value in ("1", "true", "yes")


def filters_from_query(query: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``get_healthy_proxy``/``get_healthy_proxies`` from an HTTP query:
    ``?tags=us,fast&scheme=socks5&anonymity=elite&exclude=URL&exclude=URL&strategy=least_used``.
    Repeated keys and comma-separated values both work (``tag`` is ``tags``' alias)."""
    getall = getattr(query, "getall", None)

    def values(key: str) -> list[str]:
        raw = list(getall(key, [])) if getall is not None else ([query[key]] if key in query else [])
        return [part.strip() for item in raw for part in item.split(",") if part.strip()]

    unknown = sorted(set(query) - set(QUERY_KEYS) - set(PASSED_THROUGH))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} (known: {', '.join(QUERY_KEYS + PASSED_THROUGH)})")
    kwargs: dict[str, Any] = {}
    tags = values("tags") + values("tag")
    if tags:
        kwargs["tags"] = frozenset(tags)
    if values("scheme"):
        kwargs["scheme"] = frozenset(values("scheme"))
    if values("anonymity"):
        kwargs["anonymity"] = values("anonymity")[-1]
    excluded = list(getall("exclude", [])) if getall is not None else ([query["exclude"]] if "exclude" in query else [])
    if excluded:  # URLs may hold commas in their credentials: repeat the key instead
        kwargs["exclude"] = [e.strip() for e in excluded if e.strip()]
    if values("strategy"):
        kwargs["strategy"] = check_strategy(values("strategy")[-1])
    if values("target"):
        kwargs["target"] = values("target")[-1]
    if values("sticky"):
        kwargs["sticky"] = flag("sticky", values("sticky")[-1])
    if values("service"):
        kwargs["service"] = values("service")[-1]
    if values("country"):
        kwargs["country"] = values("country")[-1]
    if values("asn"):
        kwargs["asn"] = as_number(values("asn")[-1])
    make_filters(**{k: v for k, v in kwargs.items() if k != "strategy"})  # validate now: a 400, not a 500
    return kwargs


__all__ = ["FilterKeywords", "MAX_LIMIT", "as_filters", "as_number", "check_limit", "check_strategy", "filters_from_json", "filters_from_query", "flag", "make_filters", "proxy_from_reference", "proxy_key"]
