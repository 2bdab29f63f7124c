"""Storage: SQLAlchemy models and every query as a named function.

Modules: ``models`` (tables), ``engine`` (SQLite/PostgreSQL engines, error translation),
``migrate`` (Alembic), ``proxies`` (syncing proxy lists), ``leases`` (claim, check, write back),
``instances`` (daemon heartbeats), ``retention`` (history pruning), ``status`` (the read side),
``schedule`` (spreading overdue checks at daemon start).

Every function takes an ``Engine`` and runs its own short transaction, so they are safe to call
from any thread. On SQLite pass the *writer* engine (``make_engine(url, writer=True)``) to the
functions that write, and a reader engine to ``status`` functions.
"""

from .engine import database_url_default, make_engine, masked_url
from .instances import (
    InstanceInfo,
    heartbeat,
    live_instances,
    mark_others_stopped,
    mark_stopped,
    prune_instances,
    register_instance,
)
from .leases import (
    Claim,
    claim_due,
    first_checks_due,
    reclaim_stale_leases,
    record_result,
    record_results,
    release_all_leases,
    release_claims,
    reschedule_unavailable,
)
from .migrate import check_at_head, current_revision, head_revision, upgrade
from .proxies import SyncReport, add_proxies, sync_source
from .retention import apply_retention
from .status import ProxyStatus, StatusSummary, list_proxies, status_summary

__all__ = [
    "Claim",
    "InstanceInfo",
    "ProxyStatus",
    "StatusSummary",
    "SyncReport",
    "add_proxies",
    "apply_retention",
    "check_at_head",
    "claim_due",
    "current_revision",
    "first_checks_due",
    "database_url_default",
    "head_revision",
    "heartbeat",
    "list_proxies",
    "live_instances",
    "mark_others_stopped",
    "make_engine",
    "mark_stopped",
    "masked_url",
    "prune_instances",
    "reclaim_stale_leases",
    "record_result",
    "record_results",
    "register_instance",
    "release_all_leases",
    "release_claims",
    "reschedule_unavailable",
    "status_summary",
    "sync_source",
    "upgrade",
]
