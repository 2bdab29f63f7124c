"""Each proxy's latest result per probe, for probe schedules (probes/schedule.py).

Rules:
1. One row per (proxy, probe): the probe's latest outcome that actually ran, with its time.
   A skipped probe or a carried result is not a new observation and is never written.
2. Written in the same transaction as the fenced write-back of the check (``save`` is called by
   ``store.leases.record_results``): a check whose lease was lost stores nothing here either.
3. Read for a batch of claimed proxies in the claim's transaction (``load``): one indexed query;
   each outcome is decoded only if the check carries it forward (``result.LastRun.stored``).
4. Stored as JSON the ``ProbeOutcome`` can be rebuilt from; facts that are not JSON values
   are dropped (they only feed the result's summary).
5. A worker's report of a proxy error outranks our fresh results: while a proxy is out because
   of a report (reason ``worker_report``), its claims carry no last result (``for_claim``), so
   the re-probe the report asked for runs every probe: a fresh ban pass must not restore a proxy
   the captcha service has just called banned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Text, cast, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..result import CheckResult, LastRun, ProbeOutcome
from .models import ProbeResultRow as R


_PLAIN = (str, int, float, bool, type(None))


def outcome_doc(o: ProbeOutcome) -> dict[str, Any]:
    facts = {}
    for k, v in o.facts.items():
        if not isinstance(v, _PLAIN):  # most facts are; only the others need the encoder's word
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                continue
        facts[k] = v
    return {"name": o.name, "ok": o.ok, "code": o.code, "reason": o.reason, "detail": o.detail,
            "elapsed_ms": round(o.elapsed_ms, 1), "facts": facts, "phases": dict(o.phases)}


def outcome_from_doc(d: dict[str, Any]) -> ProbeOutcome:
    return ProbeOutcome(d["name"], bool(d["ok"]), d.get("code"), d.get("reason"), d.get("detail") or "",
                        float(d.get("elapsed_ms") or 0.0), facts=dict(d.get("facts") or {}),
                        phases=dict(d.get("phases") or {}))


WORKER_REPORT = "worker_report"  # feedback.WORKER_REPORT (not imported: feedback imports the store)


def for_claim(last: dict[str, LastRun], reason: str | None) -> dict[str, LastRun]:
    """Rule 5: what a claim of a proxy whose state has ``reason`` may carry."""
    return {} if reason == WORKER_REPORT else last


def load(conn: Connection, proxy_ids: Iterable[int]) -> dict[int, dict[str, LastRun]]:
    """proxy id -> probe name -> its latest result (rule 3)."""
    ids = sorted(set(proxy_ids))
    found: dict[int, dict[str, LastRun]] = {i: {} for i in ids}
    if not ids:
        return found
    # The outcome as text, decoded only if carried forward (result.LastRun.stored).
    for pid, probe, ran_at, text in conn.execute(select(R.proxy_id, R.probe, R.ran_at, cast(R.outcome, Text))
                                                 .where(R.proxy_id.in_(ids))):
        found[pid][probe] = LastRun.stored(ran_at, text, _decode)
    return found


def _decode(text: str) -> ProbeOutcome:
    return outcome_from_doc(json.loads(text))


def save(conn: Connection, proxy_id: int, result: CheckResult) -> int:
    """Upsert the outcomes of the probes that ran in ``result`` (rule 1); how many."""
    return save_many(conn, [(proxy_id, result)])


def save_many(conn: Connection, checked: Iterable[tuple[int, CheckResult]]) -> int:
    """``save`` for a batch of checks: one upsert statement, compiled once, run over every row."""
    latest = {
        (proxy_id, o.name): {"proxy_id": proxy_id, "probe": o.name, "ran_at": result.started_at, "passed": o.ok,
                             "outcome": outcome_doc(o)}
        for proxy_id, result in checked
        for o in result.probes
        if not o.skipped and not o.carried
    }
    if not latest:
        return 0
    conn.execute(_UPSERT[conn.dialect.name], list(latest.values()))
    return len(latest)


def _upsert(insert: Any) -> Any:
    stmt = insert(R)
    return stmt.on_conflict_do_update(
        index_elements=[R.proxy_id, R.probe],
        set_={"ran_at": stmt.excluded.ran_at, "passed": stmt.excluded.passed, "outcome": stmt.excluded.outcome},
    )


_UPSERT = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}


def last_runs(conn: Connection, proxy_id: int) -> dict[str, LastRun]:
    return load(conn, [proxy_id])[proxy_id]


def ran_at_of(conn: Connection, proxy_id: int) -> dict[str, datetime]:
    """probe -> when it last ran on this proxy (tests, history)."""
    return {name: run.ran_at for name, run in last_runs(conn, proxy_id).items()}


__all__ = ["WORKER_REPORT", "for_claim", "last_runs", "load", "outcome_doc", "outcome_from_doc", "ran_at_of", "save",
           "save_many"]
