"""the vantage each check ran from, and what the check's other vantages saw

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

``checks.vantage``: the name of the vantage point the check ran from (``[check].vantage``,
vantage.py); ``checks.vantage_ip``: the address it left from as far as the checker knew it;
``checks.sights``: what ``[check].vantages`` saw in the same check (a JSON list, empty for none).
The index on (proxy_id, vantage, checked_at) serves "each other vantage's latest check of these
proxies" (store/vantages.py), read with every claim. Older rows have no vantage.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checks") as batch:
        batch.add_column(sa.Column("vantage", sa.String(64), nullable=True))
        batch.add_column(sa.Column("vantage_ip", sa.String(255), nullable=True))
        batch.add_column(sa.Column("sights", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True))
    op.create_index("ix_checks_proxy_id_vantage_checked_at", "checks", ["proxy_id", "vantage", "checked_at"])


def downgrade() -> None:
    op.drop_index("ix_checks_proxy_id_vantage_checked_at", table_name="checks")
    with op.batch_alter_table("checks") as batch:
        batch.drop_column("sights")
        batch.drop_column("vantage_ip")
        batch.drop_column("vantage")
