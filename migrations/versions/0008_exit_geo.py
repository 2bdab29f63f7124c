"""where each exit is: country and autonomous system ([geo]), and a wrong country tag

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

``proxies.exit_country`` / ``exit_asn`` / ``exit_as_org``: where the latest exit IP is, from
the offline databases in ``[geo]`` (proxycheck/geo.py); ``proxies.geo_mismatch``: the sentence
saying that its ``country:XX`` tag names another country (None: it does not, or nobody knows).
``checks`` keeps the same three facts per check. Rows from before stay unknown until their next
check.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proxies") as batch:
        batch.add_column(sa.Column("exit_country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("exit_asn", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("exit_as_org", sa.String(255), nullable=True))
        batch.add_column(sa.Column("geo_mismatch", sa.Text(), nullable=True))
    with op.batch_alter_table("checks") as batch:
        batch.add_column(sa.Column("exit_country", sa.String(2), nullable=True))
        batch.add_column(sa.Column("exit_asn", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("exit_as_org", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checks") as batch:
        for column in ("exit_as_org", "exit_asn", "exit_country"):
            batch.drop_column(column)
    with op.batch_alter_table("proxies") as batch:
        for column in ("geo_mismatch", "exit_as_org", "exit_asn", "exit_country"):
            batch.drop_column(column)
