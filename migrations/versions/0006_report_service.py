"""the captcha service a worker report names, and each proxy's subnet, for the account guard

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

``reports.service``: the service the worker passed to ``report(service=...)`` (guard.py); the
guard counts proxy errors per service in a window, so an index on (service, reported_at).
Older reports have none and count toward no service's budget. ``proxies.subnet``: the /24
(IPv4) or /48 (IPv6) of the proxy's address (none for a host name), filled in here for the rows
there are; ``proxies.held_back``: why the proxy is held back with its subnet (store/guard.py).
"""

from __future__ import annotations

import ipaddress

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("service", sa.String(64), nullable=True))
    op.create_index("ix_reports_service_reported_at", "reports", ["service", "reported_at"])
    with op.batch_alter_table("proxies") as batch:
        batch.add_column(sa.Column("subnet", sa.String(64), nullable=True))
        batch.add_column(sa.Column("held_back", sa.Text(), nullable=True))
    op.create_index("ix_proxies_subnet", "proxies", ["subnet"])
    proxies = sa.table("proxies", sa.column("id", sa.Integer), sa.column("host", sa.String), sa.column("subnet", sa.String))
    conn = op.get_bind()
    rows = [{"pid": r.id, "subnet": _subnet(r.host)} for r in conn.execute(sa.select(proxies.c.id, proxies.c.host))]
    rows = [r for r in rows if r["subnet"] is not None]
    if rows:
        conn.execute(proxies.update().where(proxies.c.id == sa.bindparam("pid")).values(subnet=sa.bindparam("subnet")), rows)


def _subnet(host: str) -> str | None:
    """guard.subnet_of as of this revision (a revision is frozen history)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 48}", strict=False))


def downgrade() -> None:
    op.drop_index("ix_proxies_subnet", table_name="proxies")
    with op.batch_alter_table("proxies") as batch:
        batch.drop_column("held_back")
        batch.drop_column("subnet")
    op.drop_index("ix_reports_service_reported_at", table_name="reports")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("service")
