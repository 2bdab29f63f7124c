"""ban targets per proxy, and a short history of exit IPs (sticky exits)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

``proxies.banned_on`` / ``usable_for`` / ``usable_at``: the ban targets of the latest check that
reached the ban probe, and when the proxy last passed everything but bans, so a proxy banned on
one target is still handed out for the others (store/selection.py). ``exit_readings`` keeps the
last few exit IPs a check saw, with times; ``exit_ips`` / ``exit_run_seconds`` /
``exit_change_gap`` summarise them (store/exits.py) so "sticky" is one comparison at hand-out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Written out here rather than imported from the models: a revision is frozen history.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)
JSONList = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("proxies") as batch:
        batch.add_column(sa.Column("banned_on", JSONList, server_default=sa.text("'[]'"), nullable=False))
        batch.add_column(sa.Column("usable_for", JSONList, server_default=sa.text("'[]'"), nullable=False))
        batch.add_column(sa.Column("usable_at", Instant, nullable=True))
        batch.add_column(sa.Column("exit_ips", JSONList, server_default=sa.text("'[]'"), nullable=False))
        batch.add_column(sa.Column("exit_run_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("exit_change_gap", sa.Float(), nullable=True))

    op.create_table(
        "exit_readings",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("proxy_id", BigId, nullable=False),
        sa.Column("seen_at", Instant, nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_exit_readings"),
        sa.ForeignKeyConstraint(
            ["proxy_id"], ["proxies.id"], name="fk_exit_readings_proxy_id_proxies", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_exit_readings_proxy_id_seen_at", "exit_readings", ["proxy_id", "seen_at"])


def downgrade() -> None:
    op.drop_table("exit_readings")
    with op.batch_alter_table("proxies") as batch:
        for column in ("exit_change_gap", "exit_run_seconds", "exit_ips", "usable_at", "usable_for", "banned_on"):
            batch.drop_column(column)
