"""A database outage in the daemon's log (``daemon/storage.py`` ``Outage``, on a fake clock): one
line when a call starts failing, one every 30 s while it keeps failing, one when it works again.
The writer logs through the same one, with what it holds (``note``)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from proxycheck.daemon.storage import Outage

DOWN = OperationalError("INSERT INTO checks", {}, Exception("database is locked"))

ROWS = [
    ("a blip", [(0.0, "failed"), (1.0, "worked")], [
        "database call write_results failed (12 held): (builtins.Exception) database is locked",
        "database call write_results works again after 1 s (1 failed attempts; wrote 12)",
    ]),
    ("a long outage", [(0.0, "failed"), (5.0, "failed"), (29.0, "failed"), (31.0, "failed"), (40.0, "failed"),
                       (62.0, "failed"), (63.0, "worked"), (64.0, "worked")], [
        "database call write_results failed (12 held): (builtins.Exception) database is locked",
        "database call write_results failed (failing for 31 s, 4 attempts; 12 held): (builtins.Exception) database is locked",
        "database call write_results failed (failing for 62 s, 6 attempts; 12 held): (builtins.Exception) database is locked",
        "database call write_results works again after 63 s (6 failed attempts; wrote 12)",
    ]),
    ("working all along", [(0.0, "worked"), (1.0, "worked")], []),
]


@pytest.mark.parametrize(("events", "lines"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_an_outage_is_a_few_lines(caplog, events, lines):
    now = [0.0]
    outage = Outage(clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="proxycheck.daemon"):
        for at, what in events:
            now[0] = at
            if what == "failed":
                outage.failed("write_results", DOWN, note="12 held")
            else:
                outage.worked("write_results", note="wrote 12")
    assert [r.getMessage() for r in caplog.records] == lines


def test_calls_fail_and_recover_each_on_its_own(caplog):
    now = [0.0]
    outage = Outage(clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="proxycheck.daemon"):
        outage.failed("apply_retention", DOWN)
        outage.failed("heartbeat", DOWN)
        now[0] = 2.0
        outage.worked("heartbeat")
    assert [r.getMessage() for r in caplog.records] == [
        "database call apply_retention failed: (builtins.Exception) database is locked",
        "database call heartbeat failed: (builtins.Exception) database is locked",
        "database call heartbeat works again after 2 s (1 failed attempts)",
    ]
