"""The watchdog side task (``daemon/publish.py`` rule 3), with a real notify socket and no clock:
it pings WATCHDOG=1 while the dispatcher makes progress, and stops pinging (with one reason in the
log per turn) once dispatch stalled, so systemd restarts the daemon."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from proxycheck.daemon.publish import watchdog
from proxycheck.sdnotify import Notifier


@pytest.mark.parametrize(("stalled_for", "pings"), [(0.0, True), (100.0, False)], ids=["progress", "stalled"])
async def test_pings_only_while_dispatch_makes_progress(tmp_path, caplog, stalled_for, pings):
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.setblocking(False)
    notifier = Notifier(path)
    try:
        with caplog.at_level(logging.ERROR, logger="proxycheck.daemon"):
            task = asyncio.create_task(watchdog(notifier, 0.0, lambda: time.monotonic() - stalled_for, stall_after=10.0))
            for _ in range(5):  # an interval of 0: each turn is one pass of the loop
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        received = []
        while True:
            try:
                received.append(listener.recv(1024))
            except BlockingIOError:
                break
    finally:
        notifier.close()
        listener.close()
    assert bool(received) is pings and all(m == b"WATCHDOG=1" for m in received)
    stalls = [r for r in caplog.records if "dispatch made no progress for 100 s; not pinging the watchdog" in r.getMessage()]
    assert bool(stalls) is not pings
