"""Rendering results for people: a table on a terminal, plain lines elsewhere. Never a password.

Colour and box-drawing only when the stream is a terminal (rich decides); in a pipe the same
information comes as one tab-free line per proxy, stable enough to grep.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .result import CheckResult
from .verdict import ERROR_NAMES


def verdict_text(r: CheckResult) -> str:
    if r.healthy:
        return "healthy"
    if r.healthy is None:
        return "not judged"
    return f"{r.code} {ERROR_NAMES[r.code]}" if r.code else "unhealthy"


def render_check_table(results: Sequence[CheckResult], console: Console) -> None:
    if console.is_terminal:
        table = Table(show_lines=False, header_style="bold")
        for col in ("proxy", "verdict", "probe", "anonymity", "exit IP", "ms", "detail"):
            table.add_column(col, overflow="fold")
        for r in results:
            style = "green" if r.healthy else ("yellow" if r.healthy is None else "red")
            latency = f"{r.latency_ms:.0f}" if r.latency_ms is not None else ""
            detail = r.detail + "".join(f"\n[dim]warning: {w}[/dim]" for w in r.warnings)
            if r.geo_mismatch:
                detail += f"\n[red]geo_mismatch: {escape(r.geo_mismatch)}[/red]"
            exit_ip = (r.exit_ip or "") + (f" ({r.geo.describe()})" if r.geo and r.geo.known else "")
            table.add_row(r.proxy.masked_url, f"[{style}]{verdict_text(r)}[/{style}]", r.probe or "",
                          r.anonymity or "", exit_ip, latency, detail)
        console.print(table)
    else:
        for r in results:
            parts = [r.proxy.masked_url, verdict_text(r)]
            if r.probe:
                parts.append(f"probe={r.probe}")
            if r.reason:
                parts.append(f"reason={r.reason}")
            if r.exit_ip:
                parts.append(f"exit_ip={r.exit_ip}")
            if r.geo and r.geo.known:
                parts.append(f"exit_geo={r.geo.describe().replace(' ', '_')}")
            if r.anonymity:
                parts.append(f"anonymity={r.anonymity}")
            console.print("  ".join(parts) + f"  -- {r.detail}", markup=False, highlight=False, soft_wrap=True)
            if r.geo_mismatch:
                console.print(f"    geo_mismatch: {r.geo_mismatch}", markup=False, highlight=False, soft_wrap=True)
            for w in r.warnings:
                console.print(f"    warning: {w}", markup=False, highlight=False, soft_wrap=True)
    console.print(summary_line(results), markup=False, highlight=False, soft_wrap=True)
    codes = sorted({r.code for r in results if r.code})
    if codes:
        hint = " / ".join(f"`proxycheck explain {c}`" for c in codes)
        console.print(f"What the codes mean and how to fix them: {hint}", markup=False, highlight=False, soft_wrap=True)


def summary_line(results: Sequence[CheckResult]) -> str:
    healthy = sum(1 for r in results if r.healthy)
    unjudged = sum(1 for r in results if r.healthy is None)
    bad = Counter(r.code for r in results if r.healthy is False)
    text = f"{len(results)} checked: {healthy} healthy, {sum(bad.values())} unhealthy"
    if unjudged:
        text += f", {unjudged} not judged"
    if bad:
        text += " (" + ", ".join(f"{code}: {n}" for code, n in bad.most_common()) + ")"
    return text
