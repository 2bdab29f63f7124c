"""What a probe declares about its targets, as data: the types the probes and the config share.

Rules:
1. A probe owns its ``[targets]`` keys: each is one ``TargetSpec`` in its ``ProbeSpec``
   (key, default, doc, the URL schemes it accepts, and where the offline judge serves it).
   ``config_targets.py`` builds the ``[targets]`` section from the registry's specs; nothing
   else lists the keys.
2. ``offline`` is the key's value on a ``proxycheck judge``, as templates of the judge's base
   URLs: ``"{http}/get"``, ``"{https}/health"``. A list key gives several. ``serve`` is the
   judge endpoint for a path the judge does not serve already (``judge_routes.ROUTES``), so a
   new probe's target works offline with no edit to the judge.
3. This module imports nothing of proxycheck but ``config_keys`` and ``wire``: the probes and the
   config both import it, and neither imports the other's side of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .config_keys import Validator, key, shown
from .wire import parse_target


@dataclass(frozen=True)
class TargetSpec:
    """One ``[targets]`` key a probe fetches. ``default`` is a URL, or a tuple of URLs for a list
    key; ``tables`` marks an array of tables (``[[targets.ban]]``) the config parses itself."""

    key: str
    default: str | tuple[str, ...]
    doc: str
    schemes: tuple[str, ...] = ("http", "https")
    offline: tuple[str, ...] = ()
    # (path, endpoint): the judge's answer on ``path``, an endpoint ``(request, options) -> answer``
    # of judge_routes.py's shape, when the judge does not serve that path already.
    serve: tuple[tuple[str, Callable[..., Any]], ...] = ()
    tables: bool = False
    # What proxycheck.example.toml shows for it: None the default, "" the default commented out
    # (a shorthand when its list is shown), else this value.
    example: str | tuple[str, ...] | None = None

    def offline_value(self, http: str, https: str) -> str | list[str] | None:
        """The key's value pointing at a judge serving plain HTTP at ``http`` and TLS at
        ``https`` (base URLs, no trailing slash); None when the judge has nothing for it."""
        urls = [t.format(http=http, https=https) for t in self.offline]
        if not urls:
            return None
        return urls if isinstance(self.default, tuple) else urls[0]


def url_check(*schemes: str) -> Validator:
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


def url_key(doc: str, default: Any, *schemes: str) -> Any:
    """A ``[targets]`` field holding a URL (or a list of them) of one of ``schemes``."""
    return key(doc, default, check=url_check(*schemes), accepts=" or ".join(f"{s}://" for s in schemes) + " URL")


@dataclass(frozen=True)
class ProbeSchedule:
    """``[probes.<name>]``: how often one probe runs on one proxy. Between runs its last result
    stands (probes/schedule.py). The defaults are each probe's own (``ProbeSpec.every``)."""

    every: float = key("seconds between runs of this probe on one proxy; between runs its last result stands "
                       "(0: every check)", 0.0, low=0, high=604800)
    jitter: float = key("fraction of `every` by which a run may come early, different per proxy, so costly "
                        "probes spread out instead of coming due together", 0.0, low=0, high=0.9)
