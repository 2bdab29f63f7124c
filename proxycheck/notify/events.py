"""What is worth a message: two observations of the daemon in, the changes between them out.

Rules:
1. Pure (h11's "bytes in, events out"): ``transitions(before, after, healthy_below)`` compares two
   ``Snapshot`` values and returns ``Event`` values; no clock, no I/O. The daemon observes a
   snapshot periodically (``daemon/notifying.py``) and hands the events to the outbox.
2. One subject per thing that can go wrong, and each subject is either *firing* or *resolved*:
   ``checker`` (degraded / ok), ``fleet`` (healthy fraction below ``[notify].healthy_below`` /
   back), ``guard:<service>`` (an error budget tripped / reset), ``target:<name>`` (a target that
   cannot judge, e.g. a ban target answering everyone alike / judging again).
3. The first observation is compared with a quiet daemon (``QUIET``): a daemon that starts
   degraded says so; one that starts fine says nothing.
4. The healthy fraction counts judged proxies only (healthy / (healthy + unhealthy)): a proxy never
   judged yet says nothing about the fleet. While fewer than half the enabled proxies are judged
   (a daemon just started, a big import) there is no fraction and no event: the first few checks
   to finish would decide it by chance. The Prometheus rule ``ProxycheckHealthyFractionLow``
   counts the same.
5. Every text is masked (``masking.redact``) where the event is made, so no proxy password can
   reach a message, whatever a reason quotes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..guard import GuardState  # the guard's own value: tripped, reason
from ..masking import redact

State = Literal["firing", "resolved"]

CHECKER_FIX = ("run `proxycheck doctor` to see which target fails; without Internet access, run your own judge "
               "(`proxycheck judge`) and point [targets] at it. Proxies keep their states meanwhile.")
FLEET_FIX = ("`proxycheck status` lists the errors that took them out (`proxycheck explain PROXY` for one); replace "
             "or re-import the proxies.")
GUARD_FIX = "`proxycheck status` names the errors, proxies and subnets that spent it."
TARGET_FIX = ("run `proxycheck doctor`; a target that answers everyone alike (429, 503, a captcha wall) cannot tell "
              "a banned proxy from a clean one: point it elsewhere or take it out of [targets].")


@dataclass(frozen=True)
class Snapshot:
    """The daemon's state, observed once."""

    checker_ok: bool
    checker_reason: str = ""  # why degraded; empty while OK
    healthy: int = 0  # enabled proxies by state
    unhealthy: int = 0
    unknown: int = 0  # never judged
    unable: Mapping[str, str] = field(default_factory=dict)  # target name -> why it cannot judge
    guards: Mapping[str, GuardState] = field(default_factory=dict)  # captcha service -> its budget

    @property
    def healthy_fraction(self) -> float | None:
        """healthy / judged (rule 4); None while fewer than half the enabled proxies are judged."""
        judged = self.healthy + self.unhealthy
        return self.healthy / judged if judged and judged >= self.unknown else None


QUIET = Snapshot(checker_ok=True)


@dataclass(frozen=True)
class Event:
    subject: str  # "checker", "fleet", "guard:<service>", "target:<name>": one firing/resolved pair each
    state: State
    kind: str  # checker_degraded, checker_ok, fleet_unhealthy, fleet_healthy, guard_tripped, guard_reset,
    #            target_unable, target_judging
    summary: str  # one human sentence; a firing one names the fix
    detail: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"subject": self.subject, "state": self.state, "event": self.kind, "summary": self.summary,
                "detail": dict(self.detail)}


def transitions(before: Snapshot | None, after: Snapshot, healthy_below: float) -> list[Event]:
    """The changes from ``before`` (None: the first observation, rule 3) to ``after``."""
    before = before or QUIET
    events = _checker(before, after) + _fleet(before, after, healthy_below)
    events += _changes("guard", _tripped(before), _tripped(after), _guard_event)
    events += _changes("target", before.unable, after.unable, _target_event)
    return events


def _checker(before: Snapshot, after: Snapshot) -> list[Event]:
    if before.checker_ok == after.checker_ok:
        return []
    if after.checker_ok:
        return [_event("checker", "resolved", "checker_ok", "proxycheck's checker is OK again: proxies are judged")]
    return [_event("checker", "firing", "checker_degraded",
                   f"proxycheck's checker is degraded, no proxy is judged: {after.checker_reason}. To fix: {CHECKER_FIX}",
                   reason=after.checker_reason)]


def _fleet(before: Snapshot, after: Snapshot, below: float) -> list[Event]:
    was, now = before.healthy_fraction, after.healthy_fraction
    if now is None:
        return []
    low_before, low_now = was is not None and was < below, now < below
    if low_before == low_now:
        return []
    figures = {"healthy": after.healthy, "judged": after.healthy + after.unhealthy, "fraction": round(now, 4),
               "threshold": below}
    share = f"{after.healthy} of {after.healthy + after.unhealthy} judged proxies ({now:.0%})"
    if low_now:
        return [_event("fleet", "firing", "fleet_unhealthy",
                       f"only {share} are healthy, below {below:.0%}. To fix: {FLEET_FIX}", **figures)]
    return [_event("fleet", "resolved", "fleet_healthy", f"{share} are healthy again, at least {below:.0%}", **figures)]


def _tripped(s: Snapshot) -> dict[str, str]:
    return {service: g.reason for service, g in s.guards.items() if g.tripped}


def _guard_event(service: str, reason: str | None) -> Event:
    if reason is None:
        return _event(f"guard:{service}", "resolved", "guard_reset",
                      f"the error budget of {service} is no longer spent: proxies are handed out for it again",
                      service=service)
    return _event(f"guard:{service}", "firing", "guard_tripped",
                  f"proxies are refused for {service}: its error budget is spent ({reason}). To fix: {GUARD_FIX}",
                  service=service, reason=reason)


def _target_event(name: str, reason: str | None) -> Event:
    if reason is None:
        return _event(f"target:{name}", "resolved", "target_judging", f"target {name} can judge proxies again",
                      target=name)
    return _event(f"target:{name}", "firing", "target_unable",
                  f"target {name} cannot judge proxies ({reason}). To fix: {TARGET_FIX}", target=name, reason=reason)


def _changes(kind: str, before: Mapping[str, str], after: Mapping[str, str], make) -> list[Event]:
    """Firing for names new in ``after``, resolved for names gone from it, sorted. A subject still
    firing with another reason is no new event: one message per transition."""
    events = [make(name, after[name]) for name in sorted(after) if name not in before]
    return events + [make(name, None) for name in sorted(before) if name not in after]


def _event(subject: str, state: State, kind: str, summary: str, **detail: Any) -> Event:
    masked = {k: redact(v) if isinstance(v, str) else v for k, v in detail.items()}
    return Event(subject, state, kind, redact(summary), masked)
