"""indexes for the fleet summary: counts by state and the bans without reading every row

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

``ix_proxies_summary`` (enabled, state, code, last_checked_at) answers the counts by state, the
failure codes and the latest check of ``status_summary`` by an index-only scan, and narrows the
worker-report count of ``feedback_summary`` to the unhealthy rows. ``ix_proxies_banned`` is a
partial index of the proxies some ban target bans, so the per-target ban counts read only those.
Both are read at every heartbeat under systemd and at every Prometheus scrape; before them a
summary read every row of ``proxies`` (0.7 s of CPU at 100,000 proxies on SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The same predicate as proxycheck/store/models.py HAS_BANS (a migration does not import the
# models: they move on, a revision does not).
HAS_BANS = "banned_on <> '[]'"


def upgrade() -> None:
    op.create_index("ix_proxies_summary", "proxies", ["enabled", "state", "code", "last_checked_at"])
    op.create_index("ix_proxies_banned", "proxies", ["enabled"], sqlite_where=sa.text(HAS_BANS),
                    postgresql_where=sa.text(HAS_BANS))


def downgrade() -> None:
    op.drop_index("ix_proxies_banned", table_name="proxies")
    op.drop_index("ix_proxies_summary", table_name="proxies")
