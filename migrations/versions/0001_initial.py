"""initial schema: proxies, checks, instances

Revision ID: 0001
Revises:
Create Date: 2026-11-25

One tree serves SQLite and PostgreSQL: keep to portable types, alter tables inside
``op.batch_alter_table`` (a copy-and-move on SQLite, plain ALTER elsewhere) and name every
constraint (models.NAMING_CONVENTION).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Written out here rather than imported from the models: a revision is frozen history.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONList = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "proxies",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("scheme", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("password", sa.String(255), nullable=True),
        sa.Column("tags", JSONList, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("updated_at", Instant, nullable=False),
        sa.Column("state", sa.String(16), server_default="unknown", nullable=False),
        sa.Column("consecutive_successes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failing_streak", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("probe", sa.String(64), nullable=True),
        sa.Column("state_changed_at", Instant, nullable=True),
        sa.Column("last_checked_at", Instant, nullable=True),
        sa.Column("last_success_at", Instant, nullable=True),
        sa.Column("next_check_at", Instant, nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("exit_ip", sa.String(64), nullable=True),
        sa.Column("anonymity", sa.String(16), nullable=True),
        sa.Column("resolved_ip", sa.String(64), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_proxies"),
        sa.UniqueConstraint("key", name="uq_proxies_key"),
    )
    op.create_index("ix_proxies_due", "proxies", ["enabled", "next_check_at"])
    op.create_index("ix_proxies_healthy", "proxies", ["state", "last_success_at"])
    op.create_index("ix_proxies_source", "proxies", ["source"])

    op.create_table(
        "checks",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("proxy_id", BigId, nullable=False),
        sa.Column("checked_at", Instant, nullable=False),
        sa.Column("healthy", sa.Boolean(), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("probe", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("elapsed_ms", sa.Float(), nullable=True),
        sa.Column("exit_ip", sa.String(64), nullable=True),
        sa.Column("anonymity", sa.String(16), nullable=True),
        sa.Column("probes", JSONList, nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_checks"),
        sa.ForeignKeyConstraint(
            ["proxy_id"], ["proxies.id"], name="fk_checks_proxy_id_proxies", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_checks_proxy_id_checked_at", "checks", ["proxy_id", "checked_at"])

    op.create_table(
        "instances",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", Instant, nullable=False),
        sa.Column("heartbeat_at", Instant, nullable=False),
        sa.Column("stopped_at", Instant, nullable=True),
        sa.Column("checker_state", sa.String(16), server_default="ok", nullable=False),
        sa.Column("checker_reason", sa.Text(), nullable=True),
        sa.Column("last_round_at", Instant, nullable=True),
        sa.Column("own_ips", JSONList, server_default=sa.text("'[]'"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
    )
    op.create_index("ix_instances_heartbeat_at", "instances", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_table("instances")
    op.drop_table("checks")
    op.drop_table("proxies")
