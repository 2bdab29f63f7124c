"""What callers pass in: keyword filters, HTTP query strings, references to a proxy.

Rule: every input is normalised here, once, into ``store.selection.Filters`` or a ``Proxy``;
anything malformed is a ``ValueError`` whose message names the parameter (an HTTP handler turns
it into a 400).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ProxyParseError
from ..proxy import Proxy, parse_proxy_url
from ..store.selection import ANONYMITY_LEVELS, Filters
from .settings import STRATEGIES

QUERY_KEYS = ("tags", "tag", "scheme", "anonymity", "exclude", "strategy", "target", "sticky")
PASSED_THROUGH = ("format",)  # the HTTP layer's own parameters


def make_filters(
    *,
    tags: str | Iterable[str] = (),
    scheme: str | Iterable[str] | None = None,
    anonymity: str | None = None,
    exclude: Iterable[Proxy | str] | Proxy | str = (),
    target: str | None = None,
    sticky: bool = False,
) -> Filters:
    """``tags``: all must match (a string is one tag). ``scheme``: one or several, matched exactly
    (``socks5`` does not match ``socks5h``). ``anonymity``: the minimum level
    (``anonymous`` < ``elite``). ``exclude``: proxies, URLs or keys already tried."""
    tag_set = frozenset([tags] if isinstance(tags, str) else (str(t) for t in tags))
    schemes: frozenset[str] | None = None
    if scheme is not None:
        schemes = frozenset(s.strip().lower() for s in ([scheme] if isinstance(scheme, str) else scheme))
    level = None
    if anonymity is not None:
        level = anonymity.strip().lower()
        if level not in ANONYMITY_LEVELS:
            raise ValueError(f"anonymity: {anonymity!r} is not a level (known, weakest first: {', '.join(ANONYMITY_LEVELS)})")
    if isinstance(exclude, (Proxy, str)):
        exclude = [exclude]
    if target is not None and (not isinstance(target, str) or not target.strip()):
        raise ValueError(f"target: expected a ban target's name, got {target!r}")
    if not isinstance(sticky, bool):
        raise ValueError(f"sticky: expected true or false, got {sticky!r}")
    return Filters(tag_set, schemes, level, frozenset(proxy_key(e) for e in exclude),
                   target=None if target is None else target.strip(), sticky=sticky)


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    return strategy


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
        flag = values("sticky")[-1].lower()
        if flag not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError(f"sticky: expected true or false, got {flag!r}")
        kwargs["sticky"] = flag in ("1", "true", "yes")
    make_filters(**{k: v for k, v in kwargs.items() if k != "strategy"})  # validate now: a 400, not a 500
    return kwargs


__all__ = ["check_strategy", "filters_from_json", "filters_from_query", "make_filters", "proxy_from_reference", "proxy_key"]
