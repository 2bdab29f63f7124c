"""each daemon instance's heartbeat interval, so every liveness answer uses the daemon's own

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

``instances.heartbeat_interval``: the ``[daemon].heartbeat_interval`` the instance runs with
(updated on reload). An instance is live while it has not stopped and heartbeated within
``STALE_BEATS`` of its own intervals (store/instances.py rule 1). NULL (a row written before this
revision) keeps the old fixed 60 s window.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("heartbeat_interval", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("heartbeat_interval")
