"""Sticky exit IPs: does a proxy's exit IP hold for the length of a solve? Pure.

A solve takes 1-3 minutes from widget load to token, and the token is used from the same exit;
back-connect and residential gateways often rotate the exit per request or per minute.

Rules:
1. Readings: each check that learns the exit IP is one (time, IP) reading; the store keeps the
   last few per proxy (store/exits.py). No check is held open for the window: the readings
   come from the daemon's scheduled visits.
2. ``summarise`` reduces readings (oldest first) to what does not depend on the window: the
   IPs seen, how long the latest IP has held (its first to its last consecutive reading), and
   the shortest gap between two consecutive readings that differ.
3. ``stability`` applies the window (``[probes].sticky_seconds``): ``rotating`` when the exit
   changed within it (two readings less than the window apart saw different IPs); ``stable``
   when the latest IP has held for at least the window and no such change is on record; else
   ``unconfirmed`` (one reading, or readings too far apart to say). Rotating is a fact the
   worker filters on (``sticky=True``), not a failure: anti-captcha has no code for it.
4. A proxy tagged ``rotating`` is a gateway the user knows rotates: ``gateway``, never called
   unstable, never handed out as sticky.
5. A one-shot ``proxycheck check`` takes one reading, so it says ``unconfirmed`` ("one
   reading") unless the proxy is a tagged gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GATEWAY_TAG = "rotating"  # a user's tag for a rotating gateway (rule 4)


@dataclass(frozen=True)
class ExitSummary:
    ips: tuple[str, ...] = ()  # distinct, the latest IP last
    run_seconds: float | None = None
    change_gap: float | None = None


def summarise(readings: Sequence[tuple[datetime, str]]) -> ExitSummary:
    """Rule 2, for readings oldest first."""
    if not readings:
        return ExitSummary()
    ips = tuple(reversed(dict.fromkeys(ip for _, ip in reversed(readings))))  # by latest sighting
    gaps = [(b[0] - a[0]).total_seconds() for a, b in zip(readings, readings[1:]) if a[1] != b[1]]
    latest_at, latest_ip = readings[-1]
    run_start = latest_at
    for at, ip in reversed(readings):
        if ip != latest_ip:
            break
        run_start = at
    return ExitSummary(ips, (latest_at - run_start).total_seconds(), min(gaps) if gaps else None)


@dataclass(frozen=True)
class Stability:
    state: str  # stable | rotating | unconfirmed | gateway
    detail: str
    ips: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "ips": list(self.ips)}


def stability(summary: ExitSummary, window: float, *, gateway: bool = False) -> Stability:
    """Rule 3."""
    ips = summary.ips
    if gateway:
        return Stability("gateway", f"tagged {GATEWAY_TAG!r}: expected to rotate, never handed out as sticky", ips)
    if summary.change_gap is not None and summary.change_gap < window:
        return Stability("rotating", f"exit changed within {summary.change_gap:.0f} s "
                                     f"(window {window:g} s); IPs seen: {', '.join(ips)}", ips)
    if not ips:
        return Stability("unconfirmed", "no exit IP read yet", ips)
    run = summary.run_seconds or 0.0
    if run >= window:
        return Stability("stable", f"{ips[-1]} held for {run:.0f} s (window {window:g} s)", ips)
    if len(ips) > 1:
        return Stability("unconfirmed", f"exit changed between readings further apart than {window:g} s; "
                                        f"{ips[-1]} held for {run:.0f} s so far; IPs seen: {', '.join(ips)}", ips)
    return Stability("unconfirmed", f"{ips[-1]} read over {run:.0f} s so far; stable once it holds {window:g} s", ips)


def one_shot(exit_ip: str | None, tags: frozenset[str]) -> Stability:
    """What a one-shot ``check`` can say: one reading (it keeps no history)."""
    ips = (exit_ip,) if exit_ip else ()
    if GATEWAY_TAG in tags:
        return Stability("gateway", f"tagged {GATEWAY_TAG!r}: expected to rotate", ips)
    if not ips:
        return Stability("unconfirmed", "no exit IP read", ips)
    return Stability("unconfirmed", "one reading: stability needs readings over [probes].sticky_seconds "
                                    "(the daemon's scheduled visits)", ips)


