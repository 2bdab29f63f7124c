"""Logging: journald priority prefixes and password redaction (pure)."""

import logging
import os

from proxycheck.logs import JournalFormatter, redact, under_journald
from proxycheck.sdnotify import Notifier


def test_redact_is_linear_on_long_lines():
    import time

    started = time.process_time()
    redact("GET http://judge/long?pad=" + "x" * 16000 + "@")
    assert time.process_time() - started < 0.5  # quadratic took seconds here


def test_journal_formatter_prefixes_every_line():
    record = logging.LogRecord("proxycheck", logging.ERROR, __file__, 1, "boom\nsecond line", None, None)
    assert JournalFormatter("%(message)s").format(record) == "<3>boom\n<3>second line"


def test_journal_stream_must_match_stderr(tmp_path, monkeypatch):
    with open(tmp_path / "f", "w") as fh:
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert under_journald(fh)
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")
        assert not under_journald(fh)


def test_notifier_sends_datagrams(tmp_path):
    import socket

    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        n = Notifier(path)
        n.ready("3 checks")
        n.stopping()
        n.close()
        assert listener.recv(100) == b"READY=1\nSTATUS=3 checks"
        assert listener.recv(100) == b"STOPPING=1"


def test_notifier_without_socket_is_a_no_op():
    n = Notifier("")
    assert not n.enabled
    n.ready()
