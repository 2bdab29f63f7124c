"""What a check produces: one ``ProbeOutcome`` per probe and one ``CheckResult`` per proxy.

These are plain frozen values shared by the checker, the CLI, the store and the daemon.
``CheckResult.as_dict()`` is the ``--json`` shape documented in docs/output.md; keep its keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .geo import ExitGeo, mismatch
from .proxy import Proxy
from .sticky import one_shot
from .vantage import IP_LOCKED, VANTAGE_PROBE
from .verdict import CHECKER_UNAVAILABLE, error_name


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe's answer. ``ok`` with no code, or a failure with code, reason and detail."""

    name: str
    ok: bool
    code: int | None = None
    reason: str | None = None
    detail: str = ""
    elapsed_ms: float = 0.0
    skipped: bool = False
    # Facts the probe learnt on the way (exit_ip, anonymity, status...).
    facts: dict[str, Any] = field(default_factory=dict, compare=False)
    # Milliseconds per wire phase (connect, proxy_handshake, tls, ttfb, transfer), summed over the
    # probe's requests; a phase the probe did not go through (a reused connection) is absent.
    phases: dict[str, float] = field(default_factory=dict, compare=False)
    # Not run by this check: its last result, still fresh, carried forward (probes/schedule.py),
    # ``age_s`` seconds old.
    carried: bool = False
    age_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "ok": self.ok,
            "code": self.code,
            "error": error_name(self.code),
            "reason": self.reason,
            "detail": self.detail,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }
        if self.phases:
            d["phases"] = {k: round(v, 1) for k, v in self.phases.items()}
        if not self.ok and self.facts.get("failed_phase"):
            d["failed_phase"] = self.facts["failed_phase"]  # connect, proxy_handshake, proxy_auth, tls, ...
        if self.skipped:
            d["skipped"] = True
        if self.carried:
            d["carried"] = True
            d["age_s"] = None if self.age_s is None else round(self.age_s)
        return d


class LastRun:
    """A probe's latest result on one proxy and when it ran (probes/schedule.py).

    One read from the store (``LastRun.stored``) keeps its text and decodes it only when
    ``outcome`` is asked for: a claim reads every probe's time, but a check carries forward only
    the probes that are not due (two of six in steady state), and decoding all six was a third of
    the claim's CPU (issue 21, sixth pass)."""

    __slots__ = ("ran_at", "_outcome", "_text", "_decode")

    def __init__(self, outcome: ProbeOutcome, ran_at: datetime) -> None:
        self.ran_at = ran_at
        self._outcome: ProbeOutcome | None = outcome
        self._text: str | None = None
        self._decode: Callable[[str], ProbeOutcome] | None = None

    @classmethod
    def stored(cls, ran_at: datetime, text: str, decode: Callable[[str], ProbeOutcome]) -> LastRun:
        """A result as the store keeps it: ``decode(text)`` gives the outcome, when first asked for."""
        run = cls.__new__(cls)
        run.ran_at, run._outcome, run._text, run._decode = ran_at, None, text, decode
        return run

    @property
    def outcome(self) -> ProbeOutcome:
        if self._outcome is None:
            assert self._decode is not None and self._text is not None
            self._outcome = self._decode(self._text)
            self._text = self._decode = None
        return self._outcome

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LastRun):
            return NotImplemented
        return (self.ran_at, self.outcome) == (other.ran_at, other.outcome)

    __hash__ = None  # type: ignore[assignment]  # as the frozen dataclass's with an unhashable field

    def __repr__(self) -> str:
        return f"LastRun(outcome={self.outcome!r}, ran_at={self.ran_at!r})"


def history_probes(probes: tuple[ProbeOutcome, ...] | list[ProbeOutcome]) -> list[dict[str, Any]]:
    """The probes as a ``checks`` history row keeps them: each probe that ran, with its name,
    outcome and time, and the full wording only for the one that failed. A passing probe's detail
    repeats what the row's own columns say (exit IP, anonymity) and a skipped probe says nothing,
    so leaving them out makes a row a fraction of the size, and rows are most of the database
    (bench/daemon_bench.py)."""
    kept = []
    for p in probes:
        if p.skipped:
            continue
        if p.ok and p.carried:
            kept.append({"name": p.name, "ok": True, "carried": True, "age_s": p.as_dict()["age_s"]})
        elif p.ok:
            row: dict[str, Any] = {"name": p.name, "ok": True, "elapsed_ms": round(p.elapsed_ms, 1)}
            if p.phases:
                row["phases"] = {k: round(v, 1) for k, v in p.phases.items()}
            kept.append(row)
        else:
            kept.append({k: v for k, v in p.as_dict().items() if v is not None})
    return kept


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one proxy: the first failing probe's code, or healthy.

    ``healthy is None`` means the checker itself could not work (``reason ==
    "checker_unavailable"``); such a result must never change a proxy's state.
    """

    proxy: Proxy
    healthy: bool | None
    code: int | None
    reason: str | None
    detail: str
    probe: str | None  # the probe that failed
    probes: tuple[ProbeOutcome, ...]
    started_at: datetime
    elapsed_ms: float
    exit_ip: str | None = None
    anonymity: str | None = None  # transparent / anonymous / elite
    resolved_ip: str | None = None
    warnings: tuple[str, ...] = ()
    latency_ms: float | None = None  # the round trip of the probe whose spec declares "latency_ms"
    # Ban target name -> {"banned": bool or None (unknown: the target cannot judge), "detail": str},
    # from the ban probe; None when it did not
    # finish (an earlier probe failed, or the proxy failed to fetch a target).
    targets: dict[str, dict[str, Any]] | None = field(default=None, compare=False)
    # Where exit_ip is ([geo], geo.py); None: no exit IP learnt, or no database configured.
    geo: ExitGeo | None = None
    # The vantage the check ran from (vantage.py rule 1), the address it left from as far as we
    # know it, and what each vantage saw in this check (``vantage.Sight``: ours first, then
    # [check].vantages'): stored with the check, so other daemons read what we saw (not our verdict).
    vantage: str | None = None
    vantage_ip: str | None = None
    sights: tuple[Any, ...] = field(default=(), compare=False)

    @property
    def geo_mismatch(self) -> str | None:
        """The ``geo_mismatch`` sentence (verdict.MARKS): a ``country:XX`` tag the exit is not in."""
        return mismatch(self.proxy.tags, self.geo)

    @property
    def locked_working(self) -> bool:
        """IP-locked (vantage.py rule 3), and every probe that ran from here passed: what
        ``[solver].allow_ip_locked`` hands out once the service's addresses are allow-listed."""
        return self.reason == IP_LOCKED and all(p.ok for p in self.probes if p.name != VANTAGE_PROBE and not p.skipped)

    @property
    def usable_for(self) -> list[str]:
        """The ban targets this proxy may serve: every target if healthy; those that do not ban
        it if the only failure is a ban (28); none if anything else failed."""
        if self.targets is None or not (self.healthy or self.reason == "banned" or self.locked_working):
            return []
        return [name for name, verdict in self.targets.items() if verdict["banned"] is False]

    @property
    def banned_on(self) -> list[str]:
        return [name for name, verdict in (self.targets or {}).items() if verdict["banned"] is True]

    @property
    def error(self) -> str | None:
        return error_name(self.code)

    @property
    def checker_unavailable(self) -> bool:
        return self.reason == CHECKER_UNAVAILABLE

    def as_dict(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy.masked_url,
            "healthy": self.healthy,
            "code": self.code,
            "error": self.error,
            "reason": self.reason,
            "probe": self.probe,
            "detail": self.detail,
            "exit_ip": self.exit_ip,
            **(self.geo or ExitGeo()).as_dict(),
            "geo_mismatch": self.geo_mismatch,
            "anonymity": self.anonymity,
            "resolved_ip": self.resolved_ip,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "warnings": list(self.warnings),
            "tags": sorted(self.proxy.tags),
            "label": self.proxy.label,
            "checked_at": self.started_at.isoformat(),
            "elapsed_ms": round(self.elapsed_ms, 1),
            "targets": self.targets or {},
            "usable_for": self.usable_for,
            "exit": one_shot(self.exit_ip, self.proxy.tags).as_dict(),
            "vantage": self.vantage,
            "vantage_ip": self.vantage_ip,
            "vantages": [s.as_dict() for s in self.sights],
            "probes": [p.as_dict() for p in self.probes],
        }
