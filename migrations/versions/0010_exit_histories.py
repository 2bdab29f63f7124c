"""each proxy's exit IP readings in one row: ``exit_histories`` replaces ``exit_readings``

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Every check reads its proxy's last readings back to judge sticky exits (store/exits.py). With one
row per reading that was, per batch of checks, an insert, a read of ~20 rows per proxy and a
delete (issue 21's sixth pass: about 0.15-0.2 ms of the daemon's CPU per check at 100,000
proxies). ``exit_histories`` keeps them as one JSON list per proxy, ``[[seen_at, ip], ...]``
oldest first (ISO 8601 UTC), written with the check's other rows in one upsert. The readings on
record are carried over, the last 20 per proxy (what the store kept); a downgrade carries them back.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Written out here rather than imported from the models: a revision is frozen history.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)
JSONDoc = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
KEEP = 20  # store.exits.KEEP at this revision
CHUNK = 2000

readings = sa.table("exit_readings", sa.column("id", BigId), sa.column("proxy_id", BigId),
                    sa.column("seen_at", Instant), sa.column("ip", sa.String(64)))
histories = sa.table("exit_histories", sa.column("proxy_id", BigId), sa.column("readings", JSONDoc))


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def upgrade() -> None:
    op.create_table(
        "exit_histories",
        sa.Column("proxy_id", BigId, nullable=False),
        sa.Column("readings", JSONDoc, nullable=False),
        sa.PrimaryKeyConstraint("proxy_id", name="pk_exit_histories"),
        sa.ForeignKeyConstraint(
            ["proxy_id"], ["proxies.id"], name="fk_exit_histories_proxy_id_proxies", ondelete="CASCADE"
        ),
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(readings.c.proxy_id, readings.c.seen_at, readings.c.ip)
                        .order_by(readings.c.proxy_id, readings.c.seen_at, readings.c.id)
                        .execution_options(yield_per=10 * CHUNK))  # streamed: a million proxies have 20 million
    batch: list[dict] = []
    current: int | None = None
    kept: list[list[str]] = []
    for proxy_id, seen_at, ip in rows:
        if proxy_id != current:
            if current is not None:
                batch.append({"proxy_id": current, "readings": kept[-KEEP:]})
            current, kept = proxy_id, []
        kept.append([_utc(seen_at).isoformat(timespec="microseconds"), ip])  # as store.exits.encode writes them
        if len(batch) >= CHUNK:
            conn.execute(histories.insert(), batch)
            batch = []
    if current is not None:
        batch.append({"proxy_id": current, "readings": kept[-KEEP:]})
    if batch:
        conn.execute(histories.insert(), batch)
    op.drop_table("exit_readings")


def downgrade() -> None:
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
    conn = op.get_bind()
    batch: list[dict] = []
    for proxy_id, kept in conn.execute(sa.select(histories.c.proxy_id, histories.c.readings)
                                       .execution_options(yield_per=CHUNK)):
        batch.extend({"proxy_id": proxy_id, "seen_at": datetime.fromisoformat(at), "ip": ip} for at, ip in kept)
        if len(batch) >= CHUNK:
            conn.execute(readings.insert(), batch)
            batch = []
    if batch:
        conn.execute(readings.insert(), batch)
    op.drop_table("exit_histories")
