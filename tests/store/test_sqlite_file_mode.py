"""The SQLite files take their mode from the umask (the unit's UMask=0007 gives 0660), not 0644.

Workers in the service's group write reports and counted picks into the daemon's database; with
SQLite's own 0644 they could only read. tests/test_systemd_deploy.py proves it under systemd.
"""

from __future__ import annotations

import os
import stat

from sqlalchemy import text

from proxycheck.store import make_engine


def test_group_writable_under_umask_0007(tmp_path):
    db = tmp_path / "proxycheck.db"
    old = os.umask(0o007)
    try:
        engine = make_engine(f"sqlite:///{db}", writer=True)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        engine.dispose()
    finally:
        os.umask(old)
    assert modes == {"proxycheck.db": 0o660, "proxycheck.db-wal": 0o660, "proxycheck.db-shm": 0o660}


def test_the_umask_still_rules(tmp_path):
    db = tmp_path / "proxycheck.db"
    old = os.umask(0o077)
    try:
        make_engine(f"sqlite:///{db}", writer=True).dispose()
    finally:
        os.umask(old)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
