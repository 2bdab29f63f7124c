"""SQLite on a small disk: the WAL stays small, a full disk is told, and no completed check is lost.

A real 3 MiB tmpfs mounted by the test (root only, as CI runs), the installed CLI as a subprocess,
the loopback world's proxies. Three phases, one daemon:

1. writing: the WAL never grows past twice ``CHECKPOINT_ABOVE`` (store/engine.py rule 5; left
   to itself SQLite lets it reach about 4 MB, which fills this volume by itself);
2. full: a filler file takes the rest of the volume (and whatever the daemon frees); ``/healthz`` answers 503 naming the
   unwritten results and systemd's STATUS says "storage FAILING" (daemon/writer.py rule 6);
3. space returns: the held results are written, ``/healthz`` is 200 again, and SIGTERM finds
   nothing left unwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from daemons import FLEET, label_of, running_daemon, wait_until, write_daemon_config
from daemons import sqlite_query as query

from proxycheck.world import free_port

from proxycheck.store.engine import CHECKPOINT_ABOVE

VOLUME = "3m"
CHECKS_WHILE_WRITING = 300  # rows enough to take an unchecked WAL past 1 MB (4 MB before SQLite's own checkpoint)
WAL_BOUND = 2 * CHECKPOINT_ABOVE  # the threshold plus one batch's frames (this fleet's batches are small)
SLOW = ("silent-http", "silent-socks5")  # in flight for seconds: their probes wait for a read timeout


@pytest.fixture
def volume(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the tests as root)")
    path = tmp_path / "volume"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def checks_stored(db: Path) -> int:
    return query(db, "SELECT count(*) FROM checks")[0][0]


def leased(db: Path, labels: tuple[str, ...]) -> bool:
    marks = ",".join("?" * len(labels))
    return bool(query(db, f"SELECT id FROM proxies WHERE lease_owner IS NOT NULL AND label IN ({marks})", *labels))


def top_up(filler) -> None:
    """Write ``filler`` (a file open for appending, unbuffered) until the volume is full. Called
    again and again: space the daemon frees (a truncated WAL) goes to the filler, as to another
    process writing on the same disk."""
    for size in (65536, 1):  # the last few bytes too: nothing is left for SQLite
        try:
            while True:
                filler.write(b"\0" * size)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def healthz(port: int) -> tuple[int, dict]:
    r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    return r.status_code, r.json()


def test_a_small_disk_keeps_a_small_wal_tells_a_full_one_and_loses_nothing(world, tmp_path, volume):
    db = volume / "proxycheck.db"
    port = free_port("127.0.0.1")
    config = write_daemon_config(world, tmp_path, FLEET, database_url=f"sqlite:///{db}",
                                 extra="heartbeat_interval = 0.5")
    config.write_text(config.read_text() + f'\n[http]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
    wal = Path(f"{db}-wal")
    stack = contextlib.ExitStack()  # the filler file, closed before the daemon is stopped
    with running_daemon(config) as daemon, stack:
        # 1. writing: watch the WAL while the daemon stores a few hundred checks
        largest = 0

        def enough_checks() -> bool:
            nonlocal largest
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
            assert largest <= WAL_BOUND, f"the WAL grew to {largest:,} bytes"
            return checks_stored(db) >= CHECKS_WHILE_WRITING

        wait_until(enough_checks, 180, f"{CHECKS_WHILE_WRITING} checks stored")
        code, body = healthz(port)
        assert (code, body["database"]) == (200, "ok"), body

        # 2. full, while a slow proxy is in flight: its result is held, and the daemon says so
        slow = tuple(label_of(name) for name in SLOW)
        wait_until(lambda: leased(db, slow), 30, "a slow proxy in flight")
        stored_at_fill = checks_stored(db)
        filler = stack.enter_context(open(volume / "filler", "ab", buffering=0))
        top_up(filler)
        held_seen = 0

        def told() -> bool:
            nonlocal held_seen
            top_up(filler)
            code, body = healthz(port)
            if code != 503 or body["database"] != "unavailable":
                return False
            # a failing claim or heartbeat may be told first; the held result follows
            held = re.match(r"completed results cannot be written for \d+ s \((\d+) held", body["database_reason"])
            assert held or body["database_reason"].startswith("database calls failing"), body
            held_seen = max(held_seen, int(held.group(1)) if held else 0)
            return held_seen > 0

        wait_until(told, 30, "/healthz to say that results are held unwritten")
        assert str(volume) not in healthz(port)[1]["database_reason"]  # the open endpoint names no path
        wait_until(lambda: top_up(filler) or any("storage FAILING" in m for m in daemon.notify.messages), 10,
                   "STATUS= to say writes fail")

        # 3. space returns: everything held is written
        stack.close()
        (volume / "filler").unlink()
        wait_until(lambda: healthz(port)[0] == 200, 30, "/healthz 200 once the disk has room")
        wait_until(lambda: checks_stored(db) >= stored_at_fill + held_seen, 30, "the held results stored")
    code, err = daemon.code, daemon.err
    assert code == 0, err
    assert "were not written" not in err, err
    assert re.search(r"database call write_results works again after \d+ s \(\d+ failed attempts; wrote \d+ held results\)", err), err
    assert "Traceback" not in err, err
