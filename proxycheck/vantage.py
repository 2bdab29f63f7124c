"""Vantage points, and what two of them seeing one proxy differently means: ``ip_locked``.

Rules:
1. A vantage is a name (``[check].vantage``, default the host name) and optionally the local
   address its connections to proxies leave from (``[check].source_address``). Every stored
   check records both. ``[check].vantages`` adds more (name, address) pairs on the same machine:
   for those, each check runs only ``REACH_PROBES`` (the TCP connect and one request through the
   proxy: what a captcha service's first contact does), not the suite. Several daemons on one
   PostgreSQL are several vantages too: each reads the others' latest checks (store/vantages.py).
2. What one vantage saw is a ``Sight``: ``in`` (the proxy forwarded a request for it: the check
   passed, or failed at something past the door such as a ban or an image), ``refused`` (its
   reason is in ``REFUSALS``: 407, 403, SOCKS5 0xFF, a refused or reset connection), or
   ``unknown`` (a timeout, our own trouble: it says nothing about the door).
3. IP-locked iff, within the window, one vantage got in and another was refused: the proxy
   decides by the caller's address, and a captcha service connects from its own. The verdict's
   code is the one the refused vantage's own reason predicts (``verdict.REASONS``: 49 for a 407
   or SOCKS5 0xFF, 25 for a refused connection or a 403, 27 for a reset, 36 for a refused
   tunnel), the code the service would get; its sentence names the address that got in and the
   allow-list addresses of ``[solver].services`` (solver_addresses.py).
4. A proxy whose row has credentials and that also admits us without them is *not* judged here:
   the service sends the credentials, and a proxy that honours them works from anywhere; one
   that does not is refused from another vantage, which rule 3 catches (docs/vantage.md).
5. Pure: sights in, verdict out. The checker (checker.py) gathers the sights and applies it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .solver_addresses import allow_lists
from .verdict import code_for

IP_LOCKED = "ip_locked"
VANTAGE_PROBE = "vantage"  # the ``probe`` an ip_locked verdict names
REACH_PROBES = ("tcp_connect", "anonymity")  # what an extra vantage runs (rule 1)

# Reasons that mean "turned away at the door" (rule 2); the code is the reason's own (rule 3).
REFUSALS = frozenset({"connect_refused", "connection_closed", "request_rejected", "connect_rejected", "auth_required",
                      "auth_rejected", "ident_rejected"})
# Failures that say nothing about whether the door opened (rule 2).
_UNKNOWN = frozenset({"connect_timeout", "connect_unreachable", "handshake_timeout", "read_timeout", "bad_response",
                      "internal_error", "checker_unavailable", IP_LOCKED})

Seen = Literal["in", "refused", "unknown"]


@dataclass(frozen=True)
class Vantage:
    name: str
    address: str | None = None  # the local source address; None: the kernel's choice


@dataclass(frozen=True)
class Sight:
    """What one vantage saw of one proxy at ``at``."""

    vantage: str
    address: str | None  # the address it connected from, as far as we know it
    seen: Seen
    reason: str | None
    at: datetime
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"vantage": self.vantage, "address": self.address, "seen": self.seen, "reason": self.reason,
                "at": self.at.isoformat(), "detail": self.detail}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sight:
        return cls(d["vantage"], d.get("address"), d["seen"], d.get("reason"), datetime.fromisoformat(d["at"]),
                   d.get("detail", ""))


def seen(healthy: bool | None, reason: str | None) -> Seen:
    """Rule 2 for one check's outcome."""
    if healthy:
        return "in"
    if reason in REFUSALS:
        return "refused"
    if healthy is None or reason is None or reason in _UNKNOWN:
        return "unknown"
    return "in"  # it failed further on (a ban, TLS through the tunnel, an image): the door opened


@dataclass(frozen=True)
class IpLock:
    """Rule 3's verdict: ``code`` and the sentence, from the sights that disagree."""

    code: int
    detail: str
    got_in: Sight
    refused: Sight


def ip_lock(sights: Iterable[Sight], services: tuple[str, ...] = ()) -> IpLock | None:
    """Rule 3. ``sights``: the latest per vantage, ours first. None unless one got in and another
    was refused."""
    sights = list(sights)
    got_in = next((s for s in sights if s.seen == "in"), None)
    refused = next((s for s in sights if s.seen == "refused"), None)
    if got_in is None or refused is None:
        return None
    code = code_for(refused.reason or "")
    where = got_in.address or f"vantage {got_in.vantage!r}"
    other = refused.address or f"vantage {refused.vantage!r}"
    detail = (f"accepts {where} only (from {other}: {refused.reason}): a captcha service connecting from its own "
              f"servers gets {code} unless its address is on your provider's allow-list")
    lists = allow_lists(services)
    detail += ("; allow-list " + "; ".join(lists)) if lists else " (name your services in [solver].services to see theirs)"
    return IpLock(code, detail, got_in, refused)


def bind_problem(address: str) -> str | None:
    """None if ``address`` is an IP this machine can send from, else what is wrong (for the
    config's ``source_address`` and ``vantages``: the message is put after the key's name)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address (e.g. 192.0.2.7, or 127.0.0.2 for a loopback test)"
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((str(ip), 0))
        except OSError as exc:
            why = "not an address of this machine" if exc.errno == errno.EADDRNOTAVAIL else exc.strerror
            return f"{address} cannot be sent from ({why}): use one of this machine's addresses (`ip -br addr`)"
    return None
