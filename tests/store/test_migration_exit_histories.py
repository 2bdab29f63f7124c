"""Revision 0010 moves each proxy's exit readings from ``exit_readings`` (a row per reading) into
``exit_histories`` (one JSON list per proxy) and back, on SQLite and PostgreSQL: nothing kept is
lost, times stay exact, and only the last 20 per proxy (what the store kept) are carried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from proxycheck.proxy import Proxy
from proxycheck.store import add_proxies, make_engine, migrate
from proxycheck.store.exits import KEEP, encode, readings
from proxycheck.store.models import ExitHistoryRow, ProxyRow

T = datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)
OLD = sa.table("exit_readings", sa.column("id", sa.Integer), sa.column("proxy_id", sa.Integer),
               sa.column("seen_at", sa.DateTime(timezone=True)), sa.column("ip", sa.String))


def old_rows(engine: sa.Engine) -> dict[int, list[tuple[datetime, str]]]:
    found: dict[int, list[tuple[datetime, str]]] = {}
    with engine.connect() as conn:
        for pid, at, ip in conn.execute(sa.select(OLD.c.proxy_id, OLD.c.seen_at, OLD.c.ip)
                                        .order_by(OLD.c.proxy_id, OLD.c.seen_at, OLD.c.id)):
            found.setdefault(pid, []).append((at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC), ip))
    return found


def test_readings_move_to_one_row_per_proxy_and_back(db_url):
    migrate.upgrade(db_url, "0009")
    engine = make_engine(db_url, writer=True)
    try:
        a, b, c = (Proxy("http", f"203.0.113.{n}", 3128) for n in (1, 2, 3))
        add_proxies(engine, [a, b, c])
        with engine.connect() as conn:
            ids = dict(conn.execute(sa.select(ProxyRow.key, ProxyRow.id)).all())
        # a: more than the store keeps, two IPs, inserted out of time order; b: none; c: three,
        # two of them at the same instant (their insertion order is their order), one on a whole second.
        a_seen = [(T + timedelta(seconds=300 * k), "198.51.100.1" if k % 7 else "198.51.100.2") for k in range(KEEP + 5)]
        c_seen = [(T, "198.51.100.3"), (T, "198.51.100.4"), (T.replace(microsecond=0) + timedelta(seconds=1), "198.51.100.3")]
        with engine.begin() as conn:
            conn.execute(OLD.insert(), [{"proxy_id": ids[a.key], "seen_at": at, "ip": ip} for at, ip in reversed(a_seen)])
            conn.execute(OLD.insert(), [{"proxy_id": ids[c.key], "seen_at": at, "ip": ip} for at, ip in c_seen])

        assert migrate.upgrade(db_url) == ("0009", "0010")
        with engine.connect() as conn:
            moved = readings(conn, ids.values())
        assert moved == {ids[a.key]: a_seen[-KEEP:], ids[c.key]: c_seen}
        assert all(at.tzinfo is UTC for kept in moved.values() for at, _ in kept)
        with engine.connect() as conn:  # the text the store itself writes (one width: store/exits.py encode)
            docs = dict(conn.execute(sa.select(ExitHistoryRow.proxy_id, ExitHistoryRow.readings)).all())
        assert docs == {pid: encode(kept) for pid, kept in moved.items()}

        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0009")
        assert old_rows(engine) == {ids[a.key]: a_seen[-KEEP:], ids[c.key]: c_seen}
        assert migrate.upgrade(db_url) == ("0009", "0010")
        with engine.connect() as conn:
            assert readings(conn, ids.values()) == moved
    finally:
        engine.dispose()
