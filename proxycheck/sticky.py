"""Sticky exit IPs: does a proxy's exit IP hold for the length of a solve? Pure.

A solve takes 1-3 minutes from widget load to token, and the token is used from the same exit;
back-connect and residential gateways often rotate the exit per request or per minute.

Rules:
1. Readings: each check that learns the exit IP is one (time, IP) reading; the store keeps the
   last few per proxy (store/exits.py). No check is held open for the window: the readings
   come from the daemon's visits, which rule 6 brings close enough together to judge.
2. A chain is a run of consecutive readings each less than the window
   (``[probes].sticky_seconds``) after the one before. Only a chain says what happened in
   between: two readings 300 s apart with one IP say nothing about the minutes between them.
3. ``stability``: ``rotating`` when two consecutive readings less than the window apart saw
   different IPs (the exit changed within it); else ``stable`` when a chain of the latest IP,
   with no other IP read since it began, spans at least the window; else ``unconfirmed`` (one
   reading, readings too far apart, or a chain still shorter than the window). Rotating is a
   fact the worker filters on (``sticky=True``), not a failure: anti-captcha has no code for it.
4. A proxy tagged ``rotating`` is a gateway the user knows rotates: ``gateway``, never called
   unstable, never handed out as sticky.
5. A one-shot ``proxycheck check`` takes one reading, so it says ``unconfirmed`` ("one
   reading") unless the proxy is a tagged gateway.
6. Follow-up visits (``follow_up_at``): after a usable proxy's reading, when it is
   ``unconfirmed``, or its verdict was last confirmed ``[probes].sticky_refresh`` or more
   before this reading (stable: by a chain spanning the window; rotating: by two readings less
   than the window apart), the daemon visits it again ``window / 2`` after this reading instead
   of a whole health interval later. So at the defaults (interval 300 s, window 120 s) a new
   proxy is judged about two minutes after its first check, from three readings 60 s apart, and
   a stable one re-proves a whole window each ``sticky_refresh`` (two more visits an hour). An
   exit IP that changes between two visits restarts its chain, and so the follow-ups, at once.
   Gateways need none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

GATEWAY_TAG = "rotating"  # a user's tag for a rotating gateway (rule 4)
DEFAULT_WINDOW = 120.0  # [probes].sticky_seconds' default: about one solve


@dataclass(frozen=True)
class ExitSummary:
    """What the readings say, for one window. ``run_seconds``: the span of the longest chain of
    the latest IP since that IP was first read in a row (rule 3's stable test); ``change_gap``:
    the shortest time between two consecutive readings that differ (None if none does);
    ``judged_at``: when the verdict was last confirmed (rule 6): the end of the latest chain
    spanning the window when stable, else the later reading of the latest pair less than the
    window apart."""

    ips: tuple[str, ...] = ()  # distinct, the latest IP last
    run_seconds: float | None = None
    change_gap: float | None = None
    judged_at: datetime | None = None


def summarise(readings: Sequence[tuple[datetime, str]], window: float) -> ExitSummary:
    """Rules 2 and 3, for readings oldest first."""
    if not readings:
        return ExitSummary()
    ips = tuple(reversed(dict.fromkeys(ip for _, ip in reversed(readings))))  # by latest sighting
    pairs = [((b[0] - a[0]).total_seconds(), a, b) for a, b in zip(readings, readings[1:])]
    changes = [gap for gap, a, b in pairs if a[1] != b[1]]
    close = [b[0] for gap, _, b in pairs if gap < window]
    latest_ip = readings[-1][1]
    run: list[datetime] = []  # the latest IP's readings since another IP was last read
    for at, ip in reversed(readings):
        if ip != latest_ip:
            break
        run.insert(0, at)
    longest, chain_start, held_at = 0.0, run[0], None
    for before, at in zip(run, run[1:]):
        if (at - before).total_seconds() >= window:
            chain_start = at  # a gap as long as the window breaks the chain (rule 2)
        longest = max(longest, (at - chain_start).total_seconds())
        if (at - chain_start).total_seconds() >= window:
            held_at = at
    change_gap = min(changes) if changes else None
    rotated = change_gap is not None and change_gap < window
    # Rule 6: a stable verdict was last confirmed by its latest chain spanning the window; any
    # other by the latest pair of readings less than the window apart.
    judged_at = held_at if held_at is not None and not rotated else (close[-1] if close else None)
    return ExitSummary(ips, longest, change_gap, judged_at)


@dataclass(frozen=True)
class Stability:
    state: str  # stable | rotating | unconfirmed | gateway
    detail: str
    ips: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "ips": list(self.ips)}


def stability(summary: ExitSummary, window: float, *, gateway: bool = False) -> Stability:
    """Rules 3 and 4, for a summary made with the same window (the store keeps the one made
    with the window configured when the proxy was last visited)."""
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
        return Stability("stable", f"{ips[-1]} held for {run:.0f} s over readings less than {window:g} s apart", ips)
    if len(ips) > 1:
        return Stability("unconfirmed", f"exit changed between readings further apart than {window:g} s; "
                                        f"{ips[-1]} held for {run:.0f} s so far; IPs seen: {', '.join(ips)}", ips)
    return Stability("unconfirmed", f"{ips[-1]} held for {run:.0f} s over readings less than {window:g} s apart; "
                                    f"stable once that spans {window:g} s", ips)


def follow_up_at(readings: Sequence[tuple[datetime, str]], window: float, refresh: float,
                 summary: ExitSummary | None = None) -> datetime | None:
    """Rule 6: when to read a usable, untagged proxy's exit IP again (None: at its usual
    visit). ``readings`` oldest first, the one just taken last; ``summary``: theirs, when the
    caller has already made it (``summarise(readings, window)``)."""
    if not readings:
        return None
    if summary is None:
        summary = summarise(readings, window)
    latest_at = readings[-1][0]
    decided = stability(summary, window).state != "unconfirmed"
    if decided and summary.judged_at is not None and (latest_at - summary.judged_at).total_seconds() < refresh:
        return None
    return latest_at + timedelta(seconds=window / 2)


def one_shot(exit_ip: str | None, tags: frozenset[str]) -> Stability:
    """What a one-shot ``check`` can say: one reading (it keeps no history)."""
    ips = (exit_ip,) if exit_ip else ()
    if GATEWAY_TAG in tags:
        return Stability("gateway", f"tagged {GATEWAY_TAG!r}: expected to rotate", ips)
    if not ips:
        return Stability("unconfirmed", "no exit IP read", ips)
    return Stability("unconfirmed", "one reading: stability needs readings over [probes].sticky_seconds "
                                    "(the daemon's scheduled visits)", ips)


