"""the captcha service a worker report names, for the account guard

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

``reports.service``: the service the worker passed to ``report(service=...)`` (guard.py); the
guard counts proxy errors per service in a window, so an index on (service, reported_at).
Older reports have none and count toward no service's budget.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("service", sa.String(64), nullable=True))
    op.create_index("ix_reports_service_reported_at", "reports", ["service", "reported_at"])


def downgrade() -> None:
    op.drop_index("ix_reports_service_reported_at", table_name="reports")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("service")
