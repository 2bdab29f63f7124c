"""The account guard: an error budget per captcha service (docs/guard.md).

Rules:
1. A service is the name a worker passes as ``service=`` (``report``, ``get_healthy_proxy``,
   ``lease``, the HTTP routes): ``service_name`` is the one check (stripped, lower case, 1-64
   characters of letters, digits, ``.``, ``_`` and ``-``); anything else is a ``ValueError``
   naming ``service``.
2. Its budget is ``[guard.<service>]`` when the file sets it (keys it leaves out keep the
   service's documented default), else the documented default (``DOCUMENTED``: anti-captcha,
   capmonster, 2captcha), else ``[guard]``'s own ``max_proxy_errors`` and ``window``.
   ``max_proxy_errors = 0`` turns that service's guard off.
3. Only proxy errors count (``feedback`` kind ``proxy_error``: anti-captcha 25-29, 35, 36, 49,
   2captcha's catch-alls), applied or not: the service saw each one, whatever it did to our
   state. Soft failures and errors not about the proxy never count.
4. Tripped iff at least ``max_proxy_errors`` counted errors of that service lie in the last
   ``window`` seconds (reported after ``now - window``). Hand-out resumes when the oldest error
   that keeps it tripped leaves the window: with errors at t1 <= ... <= tk (k >= N), at
   ``t(k-N+1) + window``, that instant included.
5. The state lives in the database (the ``reports`` table), so every worker process and every
   daemon on the database refuses alike (store/guard.py reads it). ``GuardTripped``'s message
   names the service, the errors that spent the budget, the proxies (``Proxy.key``: never a
   password) and their subnets, and when hand-out resumes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import GuardTripped

# What each service documents about repeated proxy errors (docs/guard.md gives the sources):
# anti-captcha bans IPs, subnets and accounts that repeat failing requests (no number given);
# CapMonster Cloud blocks the key for 10 minutes for "multiple requests with a banned proxy";
# 2captcha marks a failing proxy bad for 10 minutes and refuses it meanwhile.
DOCUMENTED: dict[str, tuple[int, float]] = {
    "anti-captcha": (10, 600.0),
    "capmonster": (5, 600.0),
    "2captcha": (10, 600.0),
}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def service_name(value: Any) -> str:
    """Rule 1: the normalised service name, or a ``ValueError`` naming ``service``."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text is None or not _NAME.fullmatch(text):
        raise ValueError(f"service: expected a captcha service's name (letters, digits, '.', '_', '-', at most "
                         f"64; e.g. anti-captcha, capmonster, 2captcha), got {value!r}")
    return text


@dataclass(frozen=True)
class Budget:
    """At most ``max_proxy_errors`` proxy errors per ``window`` seconds (0: no limit)."""

    service: str
    max_proxy_errors: int
    window: float

    @property
    def enabled(self) -> bool:
        return self.max_proxy_errors > 0


def budget_for(guard: Any, service: str) -> Budget:
    """Rule 2. ``guard`` is a ``config.Guard`` section."""
    given = guard.services.get(service)
    if given is not None:
        return Budget(service, given.max_proxy_errors, given.window)
    if service in DOCUMENTED:
        n, window = DOCUMENTED[service]
        return Budget(service, n, window)
    return Budget(service, guard.max_proxy_errors, guard.window)


def longest_window(guard: Any) -> float:
    """The longest window any budget or the subnet rule counts errors over (``config.Guard``):
    reports younger than this are never pruned."""
    return max([guard.window, *(b.window for b in guard.services.values()), *(w for _, w in DOCUMENTED.values())])


def subnet_of(host: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) of an IP literal (an IPv4-mapped IPv6 address is its IPv4
    one); None for a host name."""
    try:
        ip: Any = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    ip = getattr(ip, "ipv4_mapped", None) or ip
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True)
class GuardState:
    """One service's budget at ``now`` (rule 4). ``errors`` counts proxy errors in the window;
    ``by_error``, ``proxies`` and ``subnets`` say what spent it (most first)."""

    service: str
    budget: int
    window: float
    errors: int
    tripped: bool
    resumes_at: datetime | None  # when tripped
    by_error: tuple[tuple[str, int], ...] = ()
    proxies: tuple[tuple[str, int], ...] = ()  # Proxy.key (no password), errors
    subnets: tuple[tuple[str, int], ...] = ()  # "203.0.113.0/24", errors (IP literals only)

    @property
    def reason(self) -> str:
        """One sentence: the refusal's message when tripped, else the budget's use."""
        minutes = f"{self.window / 60:g} min"
        if not self.budget:
            return f"guard {self.service}: off (max_proxy_errors = 0)"
        if not self.tripped:
            return f"guard {self.service}: {self.errors} of {self.budget} proxy errors in the last {minutes}"
        spent = ", ".join(f"{n} × {e}" for e, n in self.by_error)
        proxies = ", ".join(f"{k} ({n})" for k, n in self.proxies[:5]) + (" ..." if len(self.proxies) > 5 else "")
        subnets = ", ".join(f"{s} ({n})" for s, n in self.subnets[:5]) or "none (host names)"
        resumes = self.resumes_at.strftime("%Y-%m-%d %H:%M:%S UTC") if self.resumes_at else "?"
        return (f"guard {self.service} tripped: {self.errors} proxy errors in the last {minutes} spent its budget of "
                f"{self.budget} ({spent}) on proxies {proxies}; subnets {subnets}; hand-out for {self.service} "
                f"resumes at {resumes}. Look at these proxies (proxycheck history), not at the service")

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "budget": self.budget,
            "window": self.window,
            "errors": self.errors,
            "tripped": self.tripped,
            "resumes_at": self.resumes_at.isoformat() if self.resumes_at else None,
            "by_error": dict(self.by_error),
            "proxies": dict(self.proxies),
            "subnets": dict(self.subnets),
            "reason": self.reason,
        }

    def refusal(self) -> GuardTripped:
        return GuardTripped(self.reason, service=self.service, resumes_at=self.resumes_at, details=self.as_dict())


__all__ = ["DOCUMENTED", "Budget", "GuardState", "budget_for", "longest_window", "service_name", "subnet_of"]
