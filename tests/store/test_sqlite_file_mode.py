"""Who may read the state directory and the SQLite database (filemodes.py): others never, the
group only when sharing was set up on purpose (a umask that leaves the group write access, as
the unit's UMask=0007, or a setgid directory), else the owner alone.

Workers in the service's group write reports and counted picks into the daemon's database, so
under the unit it is 0660 in a 0770 directory (tests/test_systemd_deploy.py proves it under
systemd); a user's shell with the usual umask 022 gets 0600 in 0700 (it used to be 0644 in 0755:
every proxy password readable by every user).
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from cli import run_cli
from proxycheck.filemodes import current_umask
from proxycheck.store import make_engine


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, setgid, expected", [
    (0o007, False, 0o660),  # the unit's UMask=0007: the proxycheck group shares
    (0o002, False, 0o660),
    (0o022, False, 0o600),  # a shell's usual umask: the owner alone, not 0644
    (0o027, False, 0o600),
    (0o077, False, 0o600),
    (0o000, False, 0o660),  # others never, whatever the umask
    (0o022, True, 0o660),  # install -d -m 2770 -g proxycheck: sharing set up on the directory
    (0o077, True, 0o660),
], ids=lambda v: f"{v:04o}" if type(v) is int else ("setgid" if v else "plain"))
def test_database_and_its_wal_files(tmp_path, mask, setgid, expected):
    if setgid:
        tmp_path.chmod(0o2770)
    db = tmp_path / "proxycheck.db"
    with umask(mask):
        engine = make_engine(f"sqlite:///{db}", writer=True)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            modes = {p.name: mode(p) for p in tmp_path.iterdir()}
        engine.dispose()
    assert modes == {"proxycheck.db": expected, "proxycheck.db-wal": expected, "proxycheck.db-shm": expected}


def test_an_existing_database_keeps_its_mode(tmp_path):
    """An administrator's chmod stands (filemodes.py rule 3)."""
    db = tmp_path / "proxycheck.db"
    db.touch(mode=0o640)
    db.chmod(0o640)
    with umask(0o077):
        make_engine(f"sqlite:///{db}", writer=True).dispose()
    assert mode(db) == 0o640


@pytest.mark.parametrize("mask, dir_mode, db_mode", [(0o022, 0o700, 0o600), (0o007, 0o770, 0o660)],
                         ids=["umask0022", "umask0007"])
def test_db_upgrade_creates_a_private_state_dir(tmp_path, mask, dir_mode, db_mode):
    """``proxycheck db upgrade`` as a user runs it: the state directory and database it creates."""
    config = tmp_path / "proxycheck.toml"
    config.write_text('state_dir = "deep/state"\n')
    with umask(mask):
        up = run_cli("db", "upgrade", "--config", str(config))
    assert up.returncode == 0, up.stderr
    state = tmp_path / "deep" / "state"
    assert (mode(state), mode(state / "proxycheck.db")) == (dir_mode, db_mode)
    assert mode(tmp_path / "deep") == 0o777 & ~mask  # a parent is not ours to lock


def test_the_umask_is_read_without_changing_it():
    with umask(0o027):
        assert current_umask() == 0o027
        assert current_umask() == 0o027
