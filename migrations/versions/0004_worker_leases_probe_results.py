"""worker check-out leases, and each proxy's latest result per probe

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

``worker_leases``: one row per check-out (``proxycheck.lease()``), held until released or
expired, then cooling down until ``cool_until`` (store/worker_leases.py). ``probe_results``: the
latest outcome of each probe on each proxy with its time, so a probe that is not due carries its
last result forward while it is fresh (probes/schedule.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Written out here rather than imported from the models: a revision is frozen history.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)
JSONDoc = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "worker_leases",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("proxy_id", BigId, nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("acquired_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=False),
        sa.Column("released_at", Instant, nullable=True),
        sa.Column("cool_until", Instant, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_worker_leases"),
        sa.ForeignKeyConstraint(
            ["proxy_id"], ["proxies.id"], name="fk_worker_leases_proxy_id_proxies", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_worker_leases_proxy_id_cool_until", "worker_leases", ["proxy_id", "cool_until"])
    op.create_index("ix_worker_leases_cool_until", "worker_leases", ["cool_until"])

    op.create_table(
        "probe_results",
        sa.Column("proxy_id", BigId, nullable=False),
        sa.Column("probe", sa.String(64), nullable=False),
        sa.Column("ran_at", Instant, nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("outcome", JSONDoc, nullable=False),
        sa.PrimaryKeyConstraint("proxy_id", "probe", name="pk_probe_results"),
        sa.ForeignKeyConstraint(
            ["proxy_id"], ["proxies.id"], name="fk_probe_results_proxy_id_proxies", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("probe_results")
    op.drop_table("worker_leases")
