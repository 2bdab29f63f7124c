"""Why no proxy qualified: the ``NoHealthyProxy`` message.

Rule: the message answers "what do I do now?". It gives the fleet's counts (by state, with the
failure codes, how many are stale), says when the filters are what excluded the healthy ones,
and says when the checker itself is the problem (no daemon running, or degraded), naming the
command that fixes it.
"""

from __future__ import annotations

from datetime import datetime
from sqlalchemy import Engine

from ..errors import NoHealthyProxy
from ..store.eligibility import Eligibility, Filters
from ..store.instances import STALE_BEATS
from ..store.selection import Shortage, shortage
from ..store.status import status_summary
from ..verdict import ERROR_NAMES


def no_healthy_proxy(
    reader: Engine, rule: Eligibility, *, max_age: float, where: str, now: datetime, counts: Shortage | None = None
) -> NoHealthyProxy:
    """The exception to raise, with its message and ``details`` (a dict, for the HTTP endpoint).
    ``counts``: ``shortage(reader, rule)`` when the caller has it already."""
    filters = rule.filters
    counts = counts or shortage(reader, rule)
    summary = status_summary(reader, now=now)
    checker = summary.checker_state  # None: no live daemon
    message = explain(counts, filters, max_age=max_age, where=where, checker=checker, checker_reason=summary.checker_reason)
    exc = NoHealthyProxy(message)
    exc.details = {  # type: ignore[attr-defined]
        "enabled": counts.enabled,
        "disabled": counts.disabled,
        "healthy_fresh": counts.fresh,
        "healthy_stale": counts.stale,
        "healthy_held_back": counts.held_back,
        "unhealthy": counts.unhealthy,
        "unknown": counts.unknown,
        "unhealthy_codes": {str(code): n for code, n in counts.codes},
        "filters": filters.describe() or None,
        "checker": checker or "not running",
    }
    return exc


def explain(
    counts: Shortage,
    filters: Filters,
    *,
    max_age: float,
    where: str,
    checker: str | None,
    checker_reason: str | None,
) -> str:
    """Pure: the counts in one paragraph."""
    if counts.enabled + counts.disabled == 0:
        return (
            f"no healthy proxy: the database at {where} has no proxies; add some with "
            "`proxycheck import FILE` or list CSV files in [daemon].sources and run `proxycheck run`"
        )
    wanted = filters.describe()
    if counts.fresh and wanted:
        head = f"no healthy proxy matches {wanted}: {counts.fresh} healthy proxies exist but none qualifies"
    else:
        head = "no healthy proxy"
    parts = [f"{counts.enabled} enabled proxies"]
    parts.append(f"{counts.fresh} healthy")
    if counts.stale:
        parts.append(
            f"{counts.stale} healthy but stale (last successful check more than {max_age:g} s ago)"
        )
    if counts.held_back:
        parts.append(f"{counts.held_back} healthy but held back with their subnet after repeated worker reports of "
                      "proxy errors (`proxycheck status` says which; a passing check lets them back)")
    if counts.unhealthy:
        parts.append(f"{counts.unhealthy} unhealthy ({_codes(counts.codes)})")
    if counts.unknown:
        parts.append(f"{counts.unknown} not checked yet")
    if counts.disabled:
        parts.append(f"{counts.disabled} disabled")
    text = f"{head}; {', '.join(parts)}"
    if checker is None:
        text += (
            f"; no proxycheck daemon is running against {where} (none has heartbeated within "
            f"{STALE_BEATS} of its heartbeat intervals): start it with `proxycheck run`, or check `proxycheck status`"
        )
    elif checker == "degraded":
        text += (
            f"; the checker is degraded ({checker_reason or 'no reason given'}), so verdicts are on "
            "hold: see `proxycheck status`"
        )
    return text


def _codes(codes: tuple[tuple[int | None, int], ...]) -> str:
    shown: list[str] = []
    for code, n in codes:
        if code is None:
            shown.append(f"no code x{n}")  # internal errors, 2captcha catch-alls, soft failures
        else:
            shown.append(f"{code} {ERROR_NAMES.get(code, '?')} x{n}")
    return ", ".join(shown)



def no_free_proxy(
    reader: Engine, filters: Filters, *, matching: int, held: int, cooling: int,
    max_concurrent: int, cooldown: float, where: str,
) -> NoHealthyProxy:
    """``matching`` healthy proxies fit the filters, but every one is leased to its limit or
    cooling down: say so, with the two settings that decide it."""
    wanted = filters.describe()
    text = (
        f"no proxy free to lease{f' matching {wanted}' if wanted else ''}: {matching} healthy "
        f"{'proxy matches' if matching == 1 else 'proxies match'} but each is leased to its limit "
        f"([worker].max_concurrent_per_proxy = {max_concurrent}) or cooling down "
        f"([worker].cooldown_seconds = {cooldown:g}); {held} lease{'' if held == 1 else 's'} held and "
        f"{cooling} prox{'y' if cooling == 1 else 'ies'} cooling in {where}: release leases sooner, or wait"
    )
    exc = NoHealthyProxy(text)
    exc.details = {  # type: ignore[attr-defined]
        "healthy_matching": matching,
        "leases_held": held,
        "cooling": cooling,
        "filters": wanted or None,
    }
    return exc


__all__ = ["explain", "no_free_proxy", "no_healthy_proxy"]
