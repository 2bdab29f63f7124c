"""The notifier the daemon holds: observations in, messages out (``[notify]``, docs/notify.md).

``observe(snapshot)`` runs ``events.transitions`` against the previous observation, passes the
events through the ``Outbox`` (de-duplication, minimum interval) and queues what is due with the
``Sender``, whose own task delivers it. Nothing here waits on the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from ..errors import ConfigError
from .deliver import Sender, message
from .events import Event, Snapshot, transitions
from .outbox import Outbox
from .settings import Notify, read_secret

log = logging.getLogger("proxycheck.notify")


class Notifications:
    def __init__(self, settings: Notify, instance: Mapping[str, str], clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.instance = dict(instance)
        self.clock = clock
        self.outbox = Outbox(settings.min_interval)
        self.sender = Sender(settings)
        self.last: Snapshot | None = None

    def observe(self, snapshot: Snapshot) -> list[Event]:
        """Compare with the last observation; queue the messages now due. Returns them (tests, logs)."""
        for event in transitions(self.last, snapshot, self.settings.healthy_below):
            log.info("notify: %s", event.summary)
            self.outbox.offer(event)
        self.last = snapshot
        due = self.outbox.due(self.clock())
        for event in due:
            self.sender.send(message(event, self.instance))
        return due

    def reconfigure(self, settings: Notify) -> None:
        """SIGHUP: new destinations and intervals; what was observed and sent is kept. A secret file
        that cannot be read now (it was when the file was loaded) keeps the old settings."""
        try:
            secret = read_secret(settings) if settings.webhook_url else b""
        except ConfigError as exc:
            log.error("notify: [notify] not reloaded, keeping the old one: %s", exc)
            return
        self.settings = settings
        self.outbox.min_interval = settings.min_interval
        self.sender.settings = settings
        self.sender.secret = secret
