"""The Alembic tree: it builds exactly the models, from empty, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, Table, text

from proxycheck.errors import SchemaOutOfDate
from proxycheck.store import make_engine, migrate
from proxycheck.store.models import metadata

# Read from the tree itself, so a new revision (or two branches re-chained at merge) needs no edit here.
HEADS = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
HEAD = HEADS[0]
NEXT = "0900"  # a revision after the head, in a copy of the tree

REVISION_NEXT = f"""
import sqlalchemy as sa
from alembic import op

revision = "{NEXT}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("proxies") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))


def downgrade():
    with op.batch_alter_table("proxies") as batch:
        batch.drop_column("country")
"""


def _diff(url: str, target: MetaData) -> list:
    engine = make_engine(url, writer=False)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), target)
    finally:
        engine.dispose()


def test_the_tree_has_one_head():
    assert len(HEADS) == 1, f"two heads {HEADS}: chain the newer revision onto the other"
    assert migrate.head_revision() == HEAD


def test_script_location_is_the_installed_package():
    location = Path(migrate.alembic_config().get_main_option("script_location"))
    assert (location / "env.py").is_file()
    assert (location / "script.py.mako").is_file()  # package data, needed by `revision`
    assert (location / "versions" / "0001_initial.py").is_file()


def test_upgrade_from_empty(db_url):
    assert migrate.current_revision(db_url) is None
    assert migrate.upgrade(db_url) == (None, HEAD)
    assert migrate.current_revision(db_url) == HEAD
    migrate.check_at_head(db_url)
    assert migrate.upgrade(db_url) == (HEAD, HEAD)  # idempotent


def test_migrations_produce_exactly_the_models(migrated_url):
    assert _diff(migrated_url, metadata) == []


def test_the_comparison_is_not_vacuous(migrated_url):
    changed = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    Table("proxies", changed, Column("country", Integer), extend_existing=True)
    assert [d[0] for d in _diff(migrated_url, changed)] == ["add_column"]


def test_check_at_head_fails_on_an_empty_database(db_url):
    with pytest.raises(
        SchemaOutOfDate, match=rf"schema is empty .*expected {HEAD}: run `proxycheck db upgrade`"
    ):
        migrate.check_at_head(db_url)


def test_check_at_head_fails_on_an_older_schema_and_upgrade_fixes_it(migrated_url, tmp_path, monkeypatch):
    # A newer release of the tree: head + a batch ALTER (copy-and-move on SQLite).
    tree = tmp_path / "migrations"
    shutil.copytree(migrate.script_location(), tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "versions" / f"{NEXT}_country.py").write_text(REVISION_NEXT)
    monkeypatch.setattr(migrate, "script_location", lambda: str(tree))

    with pytest.raises(
        SchemaOutOfDate, match=rf"^database schema is at {HEAD}, expected {NEXT}: run `proxycheck db upgrade`$"
    ):
        migrate.check_at_head(migrated_url)
    assert migrate.upgrade(migrated_url) == (HEAD, NEXT)
    migrate.check_at_head(migrated_url)


def test_check_at_head_names_a_schema_newer_than_the_code(migrated_url):
    engine = make_engine(migrated_url, writer=True)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    with pytest.raises(SchemaOutOfDate, match="at 0999, which this version of proxycheck does not know"):
        migrate.check_at_head(migrated_url)


def test_check_at_head_accepts_an_engine(migrated_url):
    engine = make_engine(migrated_url, writer=False)
    try:
        migrate.check_at_head(engine)
        assert migrate.current_revision(engine) == HEAD
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_concurrent_upgrades_on_postgresql_serialise(pg_url):
    # Two instances starting together (separate processes, as in production; Alembic's context
    # is process-global): the advisory lock makes the second wait, then find nothing to do.
    code = "import sys; from proxycheck.store import migrate; print(migrate.upgrade(sys.argv[1]))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, pg_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(out.strip() for out, _ in outputs) == [f"('{HEAD}', '{HEAD}')", f"(None, '{HEAD}')"]
