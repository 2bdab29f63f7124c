"""The module-level API as a worker uses it: discovery, configure, async twins, schema check."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

import proxycheck
from proxycheck import NoHealthyProxy, worker
from proxycheck.errors import SchemaOutOfDate
from proxycheck.store import make_engine, migrate

from .helpers import fleet, proxy

HEAD = migrate.head_revision()  # from the Alembic tree: new revisions need no edit here


def test_the_database_is_found_like_the_daemon_finds_it(migrated_url, writer, tmp_path, monkeypatch):
    (p,) = fleet(writer, [proxy(1)])
    config = tmp_path / "proxycheck.toml"
    config.write_text(f'database_url = "{migrated_url}"\n[worker]\nstrategy = "least_used"\n')
    monkeypatch.setenv("PROXYCHECK_CONFIG", str(config))
    assert proxycheck.get_healthy_proxy() == p  # opened lazily, from $PROXYCHECK_CONFIG
    pool = worker.default_pool()
    assert pool.settings.strategy == "least_used" and "pw" not in pool.url
    assert worker.default_pool() is pool  # once per process
    assert proxycheck.get_healthy_proxies() == [p]
    assert proxycheck.report(p, 28).took_out
    assert worker.feedback_summary().took_out == 1


def test_configure_points_at_a_database_explicitly(migrated_url, writer, tmp_path):
    (p,) = fleet(writer, [proxy(1)])
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    migrate.upgrade(empty)
    proxycheck.configure(empty)
    with pytest.raises(NoHealthyProxy, match="has no proxies"):
        proxycheck.get_healthy_proxy()
    proxycheck.configure(database_url=migrated_url)
    assert proxycheck.get_healthy_proxy() == p


async def test_async_twins(migrated_url, writer):
    ps = fleet(writer, [proxy(1), proxy(2)])
    proxycheck.configure(migrated_url)
    assert await proxycheck.aget_healthy_proxy(strategy="round_robin") == ps[0]
    assert await proxycheck.aget_healthy_proxies(tags="none") == []
    assert (await proxycheck.areport(ps[0], "ERROR_PROXY_BANNED")).took_out
    with pytest.raises(NoHealthyProxy):
        await proxycheck.aget_healthy_proxy(exclude=ps)


def test_a_database_behind_the_code_names_the_fix(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0001")
    proxycheck.configure(url)
    with pytest.raises(SchemaOutOfDate, match=f"at 0001, expected {HEAD}: run `proxycheck db upgrade`"):
        proxycheck.get_healthy_proxy()


def test_migration_0002_keeps_existing_proxies_and_downgrades(db_url):
    migrate.upgrade(db_url, "0001")
    engine = make_engine(db_url, writer=True)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO proxies (key, scheme, host, port, source, created_at, updated_at, next_check_at) "
            "VALUES ('http://1.2.3.4:80', 'http', '1.2.3.4', 80, 'cli', :t, :t, :t)"
        ), {"t": "2026-01-01 00:00:00"})
    assert migrate.upgrade(db_url) == ("0001", HEAD)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT use_count, last_used_at FROM proxies")).one() == (0, None)
    with migrate._migration_engine(db_url) as mig, mig.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "0001")
    assert migrate.current_revision(db_url) == "0001"
    assert migrate.upgrade(db_url) == ("0001", HEAD)
    engine.dispose()


def test_no_configuration_found_says_where_it_looked_and_what_to_set(tmp_path):
    with pytest.raises(worker.NoConfiguration) as info:
        proxycheck.get_healthy_proxy()
    message = str(info.value)
    assert message.startswith("no configuration found: $PROXYCHECK_CONFIG is not set, there is no ./proxycheck.toml in ")
    assert "Set PROXYCHECK_CONFIG" in message and "PROXYCHECK_DATABASE_URL" in message and "configure(database_url=" in message
    assert not (tmp_path / "cwd" / "state").exists()  # nothing created on the way


def test_no_config_but_the_default_database_of_a_config_less_daemon(writer, tmp_path):
    default = tmp_path / "cwd" / "state" / "proxycheck.db"  # what `proxycheck run` with no config uses here
    default.parent.mkdir()
    migrate.upgrade(f"sqlite:///{default}")
    with pytest.raises(NoHealthyProxy, match="has no proxies"):
        proxycheck.get_healthy_proxy()


def test_max_age_is_three_health_intervals_however_the_pool_is_configured(migrated_url, tmp_path, monkeypatch):
    from proxycheck.health import HealthPolicy

    proxycheck.configure(database_url=migrated_url)  # no config file: the defaults' interval
    assert worker.default_pool().settings.max_age == 3 * HealthPolicy().interval
    config = tmp_path / "proxycheck.toml"
    config.write_text("[health]\ninterval = 60\n")
    monkeypatch.setenv("PROXYCHECK_CONFIG", str(config))
    assert worker.configure(database_url=migrated_url).settings.max_age == 180
    assert worker.configure(migrated_url, settings=worker.WorkerSettings(strategy="fastest")).settings.max_age == 180
    explicit = worker.configure(migrated_url, settings=worker.WorkerSettings(max_age=42))
    assert explicit.settings.max_age == 42
