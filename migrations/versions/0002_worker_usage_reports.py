"""worker API: hand-out counters on proxies, and the reports table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

``proxies.use_count`` / ``last_used_at`` back the ``least_used`` and ``round_robin`` strategies
across worker processes; ``reports`` stores what workers said about proxies (feedback.py).
The new NOT NULL column has a server default, so SQLite adds it with a plain ALTER (batch mode
copies the table only when it must).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Written out here rather than imported from the models: a revision is frozen history.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("proxies") as batch:
        batch.add_column(sa.Column("use_count", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch.add_column(sa.Column("last_used_at", Instant, nullable=True))
        batch.create_index("ix_proxies_least_used", ["state", "use_count", "id"])
        batch.create_index("ix_proxies_round_robin", ["state", "last_used_at", "id"])

    op.create_table(
        "reports",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("proxy_id", BigId, nullable=False),
        sa.Column("reported_at", Instant, nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("service_code", sa.String(64), nullable=True),
        sa.Column("error", sa.String(64), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("took_out", sa.Boolean(), nullable=False),
        sa.Column("why_not", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.ForeignKeyConstraint(
            ["proxy_id"], ["proxies.id"], name="fk_reports_proxy_id_proxies", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_reports_reported_at", "reports", ["reported_at"])
    op.create_index("ix_reports_proxy_id_reported_at", "reports", ["proxy_id", "reported_at"])


def downgrade() -> None:
    op.drop_table("reports")
    with op.batch_alter_table("proxies") as batch:
        batch.drop_index("ix_proxies_round_robin")
        batch.drop_index("ix_proxies_least_used")
        batch.drop_column("last_used_at")
        batch.drop_column("use_count")
