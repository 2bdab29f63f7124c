"""Feedback: what a captcha service said about a proxy, as passive health (HAProxy ``observe``,
Envoy outlier detection).

Rules:
1. ``classify`` is pure and table-driven: the service's JSON response, an ``errorId`` or an
   ``errorCode`` becomes one of four kinds. The tables below are the whole mapping.
   - ``proxy_error``: anti-captcha 25-29, 35, 36, 49 (CapMonster Cloud and CapSolver use the
     same names), 2captcha's catch-alls ``ERROR_PROXY_CONNECTION_FAILED``, ``ERROR_BAD_PROXY``
     and v2 error 130 (no finer code: stored with code None; the re-probe finds the real one).
   - ``soft_failure``: ``ERROR_RECAPTCHA_TIMEOUT`` (30), ``ERROR_FAILED_LOADING_WIDGET`` (52):
     often the proxy, sometimes the target. They count like a failed check.
   - ``success``: a solved task: ``errorId`` 0 with a ``solution`` (or ``status: "ready"``),
     2captcha's ``status: 1`` with the token, or a bare ``errorId`` 0 (the caller says it worked).
   - ``not_about_proxy``: everything else: balance, key, site key, ..., and acknowledgements
     (createTask's ``{"errorId": 0, "taskId": ...}``, a ``processing`` poll, 2captcha in.php's
     task id), which say the task was accepted, not that the proxy carried it. Ignored, not stored.
2. ``decide`` is pure: a report's effect on a proxy's ``HealthState``.
   - A proxy error makes a *healthy* proxy unhealthy at once with that code and reason
     ``worker_report`` (not in ``verdict.REASONS``: it is not a probe's finding and maps to any
     code), and brings its next check forward to ``now + reprobe_after``. The normal ``rise``
     rule then restores it if it passes the re-checks.
   - A soft failure is ``health.advance`` with a failed result: it counts toward ``fall`` and
     flips the proxy only when the streak reaches it; the next check comes forward (to the
     transition's ``fast_interval``, or ``reprobe_after`` when it flipped), like HAProxy's
     ``on-error fail-check``.
   - A success zeroes the failure streak of a healthy proxy (Envoy: each result zeroes the other
     streak). It never restores an unhealthy proxy and never refreshes ``last_success_at``: a
     report can be seconds late, and freshness stays the checker's guarantee.
   - Reports about proxies that are not healthy (unknown, already unhealthy) or disabled change
     nothing: the checks decide those.
3. The guard rail and the write are ``store.reports.record_report``'s.
4. ``outcome_in``: an exception raised inside ``proxycheck.lease()`` is reported as the proxy
   error (or named soft failure) it carries, if any: a response dict, an ``error_code``/
   ``errorId``-like attribute, an argument, or an ``ERROR_...`` name in its message. Any other
   exception is a soft failure: the solve failed through this proxy, and one failure alone
   never takes a healthy proxy out (``fall``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .health import HealthPolicy, HealthState, advance
from .store.reports import WHY_NOT, Decision
from .verdict import ERROR_NAMES

WORKER_REPORT = "worker_report"  # the reason stored on a proxy a report took out
KINDS = ("proxy_error", "soft_failure", "success", "not_about_proxy")

# errorCode name -> anti-captcha code (None: a catch-all with no finer code).
PROXY_ERRORS: dict[str, int | None] = {
    **{name: code for code, name in ERROR_NAMES.items()},  # anti-captcha, CapMonster, CapSolver
    "ERROR_PROXY_CONNECTION_FAILED": None,  # 2captcha v1 res.php
    "ERROR_BAD_PROXY": None,  # 2captcha v1 in.php (proxy marked bad for 10 min), v2 errorId 130
}
SOFT_FAILURES: dict[str, int] = {"ERROR_RECAPTCHA_TIMEOUT": 30, "ERROR_FAILED_LOADING_WIDGET": 52}
# errorId -> name, for bare ids. 2captcha's v2 ids follow anti-captcha's; 130 is 2captcha's own.
ERROR_IDS: dict[int, str] = {
    **ERROR_NAMES,
    **{code: name for name, code in SOFT_FAILURES.items()},
    130: "ERROR_BAD_PROXY",
}


@dataclass(frozen=True)
class Classified:
    kind: str  # one of KINDS
    error: str | None  # normalised errorCode name
    code: int | None  # anti-captcha proxy code (25-29, 35, 36, 49) when there is one
    service_code: str | None  # what the service sent, as text ("28", "ERROR_BAD_PROXY")


def classify(outcome: Any) -> Classified:
    """The service's JSON response (dict), an ``errorId`` (int) or an ``errorCode`` (str)."""
    if isinstance(outcome, bool) or outcome is None:
        raise ValueError(f"outcome must be a response dict, an errorId or an errorCode, not {outcome!r}")
    if isinstance(outcome, int):
        return _by_id(outcome)
    if isinstance(outcome, str):
        text = outcome.strip()
        return _by_id(int(text)) if _ascii_number(text) else _by_name(text)
    if isinstance(outcome, Mapping):
        return _by_response(outcome)
    raise ValueError(f"outcome must be a response dict, an errorId or an errorCode, not {type(outcome).__name__}")


def _by_response(d: Mapping[str, Any]) -> Classified:
    code = d.get("errorCode")
    if isinstance(code, str) and code.strip():
        return _by_name(code)  # CapMonster sends errorId 1 for every error: the name decides
    if "errorId" in d:
        error_id = d["errorId"]
        if isinstance(error_id, bool) or not isinstance(error_id, (int, str)) or not _ascii_number(str(error_id).strip().lstrip("-")):
            raise ValueError(f"errorId must be a number, not {error_id!r}")
        if int(error_id) == 0 and not _solved(d):
            # createTask's {"errorId": 0, "taskId": ...} or a "processing" poll: the task was
            # accepted, not solved through the proxy, so it says nothing about the proxy yet.
            return Classified("not_about_proxy", None, None, "0")
        return _by_id(int(error_id))
    if "status" in d and "request" in d:  # 2captcha v1: {"status": 0, "request": "ERROR_..."}
        if d["status"] == 1:
            # in.php answers a task id (digits), res.php the solved token: only the token is evidence.
            if _ascii_number(str(d["request"]).strip()):
                return Classified("not_about_proxy", None, None, "1")
            return Classified("success", None, None, "1")
        return _by_name(str(d["request"]))
    if "solution" in d:
        return Classified("success", None, None, None)
    raise ValueError(
        "not a captcha service response: expected errorId/errorCode (anti-captcha, CapMonster, "
        f"2captcha v2) or status/request (2captcha v1), got keys {sorted(map(str, d))}"
    )


def _ascii_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "٢٨" and "²", which ``int`` reads as 28 and fails on."""
    return text.isascii() and text.isdigit()


def _solved(d: Mapping[str, Any]) -> bool:
    """A getTaskResult answer with the solution in it (anti-captcha, CapMonster, 2captcha v2)."""
    return "solution" in d or d.get("status") == "ready"


def _by_id(error_id: int) -> Classified:
    if error_id == 0:
        return Classified("success", None, None, "0")
    name = ERROR_IDS.get(error_id)
    if name is None:
        return Classified("not_about_proxy", None, None, str(error_id))
    return replace(_by_name(name), service_code=str(error_id))


def _by_name(text: str) -> Classified:
    name = text.strip().upper()
    if not name.startswith("ERROR_"):
        name = "ERROR_" + name
    if name in PROXY_ERRORS:
        return Classified("proxy_error", name, PROXY_ERRORS[name], text.strip())
    if name in SOFT_FAILURES:
        return Classified("soft_failure", name, None, text.strip())
    return Classified("not_about_proxy", name, None, text.strip())


# Where worker code and captcha client libraries put the service's answer on an exception:
# python-anticaptcha's AnticaptchaException(error_id, error_code, description) has error_code,
# others keep the response dict, and most put the ERROR_ name in the message.
_RESPONSE_ATTRS = ("response", "result", "json")
_CODE_ATTRS = ("error_code", "errorCode", "error_id", "errorId")
_ERROR_NAME = re.compile(r"\bERROR_[A-Z0-9_]+\b")


def outcome_in(exc: BaseException) -> Any:
    """The captcha service's answer carried by ``exc`` (or its ``__cause__``) when it names a
    proxy error or a soft failure, else None (rule 4: ``lease()`` reports an exception inside
    its block as a soft failure unless it carries a proxy error). Pure."""
    for e in (exc, exc.__cause__):
        if e is None:
            continue
        found: list[Any] = [getattr(e, a, None) for a in _RESPONSE_ATTRS + _CODE_ATTRS]
        found += [a for a in e.args if isinstance(a, (Mapping, str))]  # not ints: OSError(28, ...) is an errno
        found += _ERROR_NAME.findall(str(e))
        for candidate in found:
            if candidate is None or isinstance(candidate, bool) or not isinstance(candidate, (Mapping, str, int)):
                continue
            try:
                kind = classify(candidate).kind
            except (ValueError, TypeError):
                continue
            if kind in ("proxy_error", "soft_failure"):
                return candidate
    return None


def decide(
    kind: str,
    health: HealthState,
    enabled: bool,
    next_check_at: datetime,
    *,
    code: int | None,
    detail: str,
    now: datetime,
    policy: HealthPolicy,
    reprobe_after: float,
    rng: random.Random,
) -> Decision:
    """One report's effect on one proxy (rule 2)."""
    if kind not in ("proxy_error", "soft_failure", "success"):
        return Decision(False, "no_change")
    if not enabled:
        return Decision(False, "disabled")
    if health.state != "healthy":
        return Decision(False, "not_healthy")
    soon = min(next_check_at, now + timedelta(seconds=reprobe_after))
    if kind == "proxy_error":
        new = replace(
            health,
            state="unhealthy",
            consecutive_successes=0,
            consecutive_failures=health.consecutive_failures + 1,
            failing_streak=1,
            code=code,
            reason=WORKER_REPORT,
            changed_at=now,
        )
        return Decision(True, state=new, next_check_at=soon, detail=detail, takes_out=True)
    if kind == "soft_failure":
        t = advance(health, healthy=False, code=None, reason=WORKER_REPORT, now=now, policy=policy, rng=rng)
        if t.changed:
            return Decision(True, state=t.state, next_check_at=soon, detail=detail, takes_out=True)
        return Decision(True, state=t.state, next_check_at=min(next_check_at, t.next_check_at))
    if health.consecutive_failures == 0:
        return Decision(False, "no_change")
    t = advance(health, healthy=True, code=None, reason=None, now=now, policy=policy, rng=rng)
    return Decision(True, state=t.state)


@dataclass(frozen=True)
class ReportResult:
    """What ``report()`` did. ``as_dict()`` is the HTTP endpoint's JSON."""

    proxy: str  # masked
    kind: str
    error: str | None
    code: int | None
    stored: bool
    applied: bool
    took_out: bool  # this report made the proxy unhealthy
    why_not: str | None  # a key of store.reports.WHY_NOT, or "unknown_proxy"
    state: str | None  # the proxy's state afterwards (None: not in the database)

    @property
    def explanation(self) -> str | None:
        if self.why_not == "unknown_proxy":
            return "the proxy is not in proxycheck's database"
        return WHY_NOT.get(self.why_not or "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy,
            "kind": self.kind,
            "error": self.error,
            "code": self.code,
            "stored": self.stored,
            "applied": self.applied,
            "took_out": self.took_out,
            "why_not": self.why_not,
            "explanation": self.explanation,
            "state": self.state,
        }


__all__ = [
    "Classified",
    "ERROR_IDS",
    "KINDS",
    "PROXY_ERRORS",
    "ReportResult",
    "SOFT_FAILURES",
    "WORKER_REPORT",
    "classify",
    "decide",
    "outcome_in",
]
