"""``proxycheck status``: the documented JSON shape and the human table, from the read side.

JSON (one object; keys are a contract — see docs/output.md "status --json"):
``{"summary": {"counts": {healthy, unhealthy, unknown, disabled}, "total", "checker":
{"state": ok|degraded|not running, "reason", "daemons": [...]}, "last_round_at", "top_codes":
[{"code", "error", "proxies"}], "overdue", "feedback": {"window_seconds", "reports", "applied",
"took_out", "held_back", "budget", "out_now", "guard_rail_holding", "by_error", "last_report_at"},
"guards": [{"service", "budget", "window", "errors", "tripped", "resumes_at", "by_error", "proxies" (keys, no
password), "subnets", "reason"}] (guard.py), "held_subnets": [{"subnet", "proxies", "reason"}],
"leases": {"held", "cooling", "list": [{"lease", "proxy" (masked), "worker", "acquired_at",
"expires_at"}]}},
"proxies": [{"proxy" (masked), "state", "code",
"error", "reason", "probe", "detail", "last_checked_at", "last_success_at", "latency_ms",
"exit_ip", "exit_country", "exit_asn", "exit_as_org", "geo_mismatch", "anonymity", "tags", "label",
"source", "banned_on", "usable_for", "exit": {"state": stable|rotating|unconfirmed|gateway, "detail",
"ips"}}]}``; the summary also has "bans":
[{"target", "proxies"}]. Never a password.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .geo import ExitGeo
from .guard import GuardState
from .store.history import ProxyHistory
from .store.reports import WHY_NOT, FeedbackSummary
from .store.status import ProxyStatus, StatusSummary
from .store.worker_leases import LeaseSummary
from .sticky import DEFAULT_WINDOW
from .verdict import ERROR_NAMES, error_name


LEASES_SHOWN = 10  # leases listed by the text view


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def checker_state(summary: StatusSummary) -> str:
    return summary.checker_state or "not running"


def feedback_json(f: FeedbackSummary) -> dict[str, Any]:
    return {
        "window_seconds": f.window,
        "reports": f.reports,
        "applied": f.applied,
        "took_out": f.took_out,
        "held_back": f.held_back,
        "budget": f.budget,
        "out_now": f.out_now,
        "guard_rail_holding": f.holding,
        "by_error": [{"error": e, "reports": n} for e, n in f.by_error],
        "last_report_at": _iso(f.last_report_at),
    }


def leases_json(leases: LeaseSummary) -> dict[str, Any]:
    return {
        "held": leases.held,
        "cooling": leases.cooling,
        "list": [{"lease": h.id, "proxy": h.proxy_key, "worker": h.worker, "acquired_at": _iso(h.acquired_at),
                  "expires_at": _iso(h.expires_at)} for h in leases.leases],
    }


def as_json(summary: StatusSummary, rows: Sequence[ProxyStatus], feedback: FeedbackSummary | None = None,
            sticky_seconds: float = DEFAULT_WINDOW, leases: LeaseSummary | None = None,
            guards: dict[str, GuardState] | None = None,
            held: Sequence[tuple[str, int, str]] | None = None) -> dict[str, Any]:
    shaped = {
        "summary": {
            "counts": dict(summary.counts),
            "total": summary.total,
            "checker": {
                "state": checker_state(summary),
                "reason": summary.checker_reason if summary.checker_state else "no daemon running",
                "daemons": [
                    {"id": i.id, "hostname": i.hostname, "pid": i.pid, "heartbeat_at": _iso(i.heartbeat_at),
                     "checker_state": i.checker_state, "own_ips": list(i.own_ips)}
                    for i in summary.instances
                ],
            },
            "last_round_at": _iso(summary.last_round_at),
            "top_codes": [{"code": c, "error": error_name(c), "proxies": n} for c, n in summary.top_codes],
            "overdue": summary.overdue,
            "bans": [{"target": t, "proxies": n} for t, n in summary.bans],
        },
        "proxies": [_row(r, sticky_seconds) for r in rows],
    }
    if feedback is not None:
        shaped["summary"]["feedback"] = feedback_json(feedback)
    if leases is not None:
        shaped["summary"]["leases"] = leases_json(leases)
    if guards is not None:
        shaped["summary"]["guards"] = [g.as_dict() for g in guards.values()]
    if held is not None:
        shaped["summary"]["held_subnets"] = [{"subnet": s, "proxies": n, "reason": r} for s, n, r in held]
    return shaped


def _row(r: ProxyStatus, sticky_seconds: float = DEFAULT_WINDOW) -> dict[str, Any]:
    failing = r.health.state == "unhealthy"
    return {
        "proxy": r.proxy.masked_url,
        "state": r.display_state,
        "code": r.health.code if failing else None,
        "error": error_name(r.health.code) if failing else None,
        "reason": r.health.reason if failing else None,
        "probe": r.probe if failing else None,
        "detail": r.detail,
        "last_checked_at": _iso(r.last_checked_at),
        "last_success_at": _iso(r.last_success_at),
        "latency_ms": r.latency_ms,
        "exit_ip": r.exit_ip,
        **r.geo.as_dict(),
        "geo_mismatch": r.geo_mismatch,
        "anonymity": r.anonymity,
        "tags": sorted(r.proxy.tags),
        "label": r.proxy.label,
        "source": r.source,
        "banned_on": list(r.banned_on),
        "usable_for": list(r.usable_for),
        "exit": r.stability(sticky_seconds).as_dict(),
        "vantages": [s.as_dict() for s in r.vantages],
    }


def _where(r: ProxyStatus) -> Text:
    """The table's "where" cell: ``DE AS3320``, flagged when the country tag says otherwise."""
    if not r.geo.known:
        return Text("")
    text = " ".join(p for p in (r.geo.country, f"AS{r.geo.asn}" if r.geo.asn is not None else None) if p)
    return Text(f"{text} (tag says otherwise)" if r.geo_mismatch else text, style="red" if r.geo_mismatch else "")


def age(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return "never"
    s = max(0, int((now - dt).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def render(summary: StatusSummary, rows: Sequence[ProxyStatus], console: Console, feedback: FeedbackSummary | None = None,
           sticky_seconds: float = DEFAULT_WINDOW, leases: LeaseSummary | None = None,
           guards: dict[str, GuardState] | None = None, held: Sequence[tuple[str, int, str]] = ()) -> None:
    now = datetime.now(UTC)
    c = summary.counts
    state = checker_state(summary)
    ok = f"ok, but {summary.checker_reason}" if summary.checker_reason else "ok"  # targets that cannot judge
    checker = {"ok": ok, "degraded": f"DEGRADED ({summary.checker_reason})"}.get(state, "daemon not running")
    console.print(
        f"{summary.total} proxies: {c['healthy']} healthy, {c['unhealthy']} unhealthy, {c['unknown']} unknown, "
        f"{c['disabled']} disabled", markup=False, highlight=False, soft_wrap=True)
    console.print(f"checker: {checker}; last round {age(summary.last_round_at, now)}"
                  + (f"; {summary.overdue} overdue" if summary.overdue else ""), markup=False, highlight=False, soft_wrap=True)
    if summary.top_codes:
        console.print("failing: " + ", ".join(f"{code} {ERROR_NAMES[code]} x{n}" for code, n in summary.top_codes),
                      markup=False, highlight=False, soft_wrap=True)
    if summary.bans:
        console.print("banned on: " + ", ".join(f"{t} x{n}" for t, n in summary.bans),
                      markup=False, highlight=False, soft_wrap=True)
    if feedback is not None and (feedback.reports or feedback.out_now):
        console.print(feedback.line(), markup=False, highlight=False, soft_wrap=True)
    for g in (guards or {}).values():  # every budget in use (a service no error was reported for: no line)
        if g.errors or g.tripped:
            console.print(("GUARD TRIPPED: " if g.tripped else "") + g.reason, markup=False, highlight=False, soft_wrap=True)
    for subnet, n, reason in held:
        console.print(f"HELD BACK: {n} proxies of {subnet}: {reason}", markup=False, highlight=False, soft_wrap=True)
    if leases is not None and (leases.held or leases.cooling):
        console.print(f"worker leases: {leases.held} held, {leases.cooling} proxies cooling down", markup=False,
                      highlight=False, soft_wrap=True)
        for h in leases.leases[:LEASES_SHOWN]:
            left = max(0, int((h.expires_at - now).total_seconds()))
            console.print(f"  {h.proxy_key} leased by {h.worker or '?'} {age(h.acquired_at, now)}, expires in {left}s",
                          markup=False, highlight=False, soft_wrap=True)
        if leases.held > LEASES_SHOWN:
            console.print(f"  ... and {leases.held - LEASES_SHOWN} more (status --json lists them)", markup=False, highlight=False)
    if not rows:
        return
    labelled = any(r.proxy.label for r in rows)  # the label column only when someone uses labels
    if console.is_terminal:
        table = Table(header_style="bold")
        for col in ("proxy", *(("label",) if labelled else ()), "state", "code", "reason", "checked", "ms", "exit IP", "where",
                    "anonymity", "exit", "banned on"):
            table.add_column(col, overflow="fold")
        styles = {"healthy": "green", "unhealthy": "red", "unknown": "yellow", "disabled": "dim"}
        for r in rows:
            j = _row(r)
            code = f"{j['code']} {j['error']}" if j["code"] else ""
            latency = f"{r.latency_ms:.0f}" if r.latency_ms is not None else ""
            st = styles[j["state"]]
            # Text, not markup: "[fe80::1]" in a URL or "[eu]" in a label is not a style tag.
            table.add_row(Text(j["proxy"]), *((Text(j["label"] or ""),) if labelled else ()), f"[{st}]{j['state']}[/{st}]", code, j["reason"] or "", age(r.last_checked_at, now),
                          latency, r.exit_ip or "", _where(r), r.anonymity or "", r.stability(sticky_seconds).state,
                          ", ".join(r.banned_on))
        console.print(table)
    else:
        for r in rows:
            j = _row(r)
            parts = [j["proxy"] + (f" ({j['label']})" if j["label"] else ""), j["state"]]
            if j["code"]:
                parts += [f"{j['code']} {j['error']}", f"reason={j['reason']}"]
            parts.append(f"checked={age(r.last_checked_at, now)}")
            if r.latency_ms is not None:
                parts.append(f"latency_ms={r.latency_ms:.0f}")
            if r.exit_ip:
                parts.append(f"exit_ip={r.exit_ip}")
            if r.geo.known:
                parts.append(f"exit_geo={r.geo.describe().replace(' ', '_')}")
            if r.geo_mismatch:
                parts.append("GEO_MISMATCH")
            if r.anonymity:
                parts.append(f"anonymity={r.anonymity}")
            parts.append(f"exit={r.stability(sticky_seconds).state}")
            if r.banned_on:
                parts.append(f"banned_on={','.join(r.banned_on)}")
            if len(r.vantages) > 1:
                parts.append("vantages=" + ",".join(f"{s.vantage}:{s.seen}" for s in r.vantages))
            console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True)
    for r in rows:
        if r.geo_mismatch:
            console.print(f"geo_mismatch: {r.proxy.masked_url}: {r.geo_mismatch} (not handed out for its country tag: "
                          "docs/geo.md)", markup=False, highlight=False, soft_wrap=True)
    codes = sorted({r.health.code for r in rows if r.health.state == "unhealthy" and r.health.code})
    if codes:
        console.print("What the codes mean: " + " / ".join(f"`proxycheck explain {c}`" for c in codes),
                      markup=False, highlight=False, soft_wrap=True)


def history_json(h: ProxyHistory) -> dict[str, Any]:
    """``proxycheck history --json``: ``{"proxy", "checks": [...], "reports": [...]}``, newest first."""
    return {
        "proxy": h.proxy_key,
        "checks": [
            {"checked_at": _iso(c.checked_at), "healthy": c.healthy, "code": c.code, "error": error_name(c.code),
             "reason": c.reason, "probe": c.probe, "detail": c.detail, "elapsed_ms": c.elapsed_ms,
             "exit_ip": c.exit_ip, "exit_country": c.exit_country, "exit_asn": c.exit_asn, "exit_as_org": c.exit_as_org,
             "daemon": c.instance_id, "vantage": c.vantage, "vantage_ip": c.vantage_ip, "vantages": c.sights,
             "probes": c.probes}
            for c in h.checks
        ],
        "reports": [
            {"reported_at": _iso(r.reported_at), "worker": r.worker, "service_code": r.service_code, "error": r.error,
             "code": r.code, "kind": r.kind, "applied": r.applied, "took_out": r.took_out, "why_not": r.why_not}
            for r in h.reports
        ],
    }


def render_history(h: ProxyHistory, console: Console) -> None:
    now = datetime.now(UTC)

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    say(f"{h.proxy_key}: {len(h.checks)} recent checks, {len(h.reports)} worker reports")
    for c in h.checks:
        verdict = "ok" if c.healthy else ("not judged" if c.healthy is None else f"{c.code} {error_name(c.code)}")
        elapsed = f" in {c.elapsed_ms:.0f} ms" if c.elapsed_ms is not None else ""
        detail = f": {c.detail}" if c.detail and not c.healthy else ""
        where = ExitGeo(c.exit_country, c.exit_asn, c.exit_as_org)
        exit_ip = f"  exit {c.exit_ip}" + (f" ({where.describe()})" if where.known else "") if c.exit_ip else ""
        seen = (" [" + ", ".join(f"{s['vantage']}: {s['seen']}" for s in c.sights) + "]") if len(c.sights) > 1 else ""
        say(f"  check   {_iso(c.checked_at)} ({age(c.checked_at, now)})  {verdict}{elapsed}"
            + (f"  from={c.vantage}" if c.vantage else "") + seen
            + (f"  probe={c.probe}" if c.probe and not c.healthy else "") + exit_ip + detail)
    for r in h.reports:
        effect = "applied" if r.applied else f"not applied: {WHY_NOT.get(r.why_not or '', r.why_not)}"
        say(f"  report  {_iso(r.reported_at)} ({age(r.reported_at, now)})  {r.error or r.service_code} ({r.kind}) "
            f"from {r.worker or 'unknown worker'}; {effect}")
