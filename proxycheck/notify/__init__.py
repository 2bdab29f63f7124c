"""Notifications without Prometheus (``[notify]``): a signed webhook and Apprise URLs, sent on
changes of state. ``events`` (pure: snapshots in, events out), ``outbox`` (pure: de-duplication
and minimum interval), ``deliver`` (the delivery task: retries, signature), ``notifier`` (what the
daemon holds), ``settings`` (the ``[notify]`` section). docs/notify.md is the user's side.
"""

from .events import Event, Snapshot, transitions
from .notifier import Notifications
from .settings import Notify

__all__ = ["Event", "Notifications", "Notify", "Snapshot", "transitions"]
