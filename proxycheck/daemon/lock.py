"""One daemon per SQLite file, enforced by an flock next to it.

Rule: SQLite allows one writer daemon per database. Holding the flock also *proves* that no
other daemon runs, so leases left in the file are a dead daemon's and are taken back at start,
and ``status`` reads it too (store/instances.py rule 2).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import ProxycheckError
from ..store.instances import daemon_lock_path


class SingleDaemonLock:
    """SQLite supports one writer daemon per database file: an flock next to it enforces that."""

    def __init__(self, db_path: Path) -> None:
        self.path = daemon_lock_path(db_path)
        self._fh = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            self._fh = None
            raise ProxycheckError(
                f"another proxycheck daemon ({holder}) is already using {self.path.with_suffix('').with_suffix('')}; "
                "SQLite allows one daemon per database — stop it, or use PostgreSQL (database_url) to run several"
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self._fh.flush()

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

