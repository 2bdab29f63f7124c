"""Logging to stderr in a form journald understands.

Under systemd (``$JOURNAL_STREAM`` names our stderr) every line starts with a ``<N>`` syslog
priority prefix (sd-daemon(3)) and carries no timestamp, since journald stamps lines itself;
continuation lines of tracebacks get the prefix too. Elsewhere: a timestamped human format.
Log records never contain proxy passwords: code logs ``Proxy.masked_url``, and
``RedactingFilter`` masks ``user:password@`` and ``Authorization: Basic`` in any message as a
second line of defence (``masking.redact``).
"""

from __future__ import annotations

import logging
import os
import sys

from .masking import redact

_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in redact(super().format(record)).splitlines())


def under_journald(stream=None) -> bool:
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, inode = (int(x) for x in value.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, inode)


def setup_logging(verbose: int = 0) -> None:
    level = logging.DEBUG if verbose >= 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if verbose == 0 else level)
    logging.getLogger("proxycheck").setLevel(level)
    # A library's per-job INFO lines are too chatty for a prober (the package no longer imports
    # httpx, whose per-request lines were quieted here too).
    for noisy in ("apscheduler.executors.default",):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
