"""The probe suite, in the order where an earlier failure explains the later ones.

Adding a failure mode: one module here, one line in ``SUITE``, one reason in ``verdict.REASONS``,
one row in the fixture table test.
"""

from __future__ import annotations

from . import anonymity, ban, images, long_get, ssl_tunnel, tcp_connect
from .base import Probe

SUITE: dict[str, Probe] = {
    "tcp_connect": tcp_connect.probe,  # 25, 26
    "anonymity": anonymity.probe,  # 49 (forwarded GET), 27, 29
    "ssl": ssl_tunnel.probe,  # 49 (CONNECT), 36 (no tunnel / TLS)
    "long_get": long_get.probe,  # 36
    "images": images.probe,  # 35
    "ban": ban.probe,  # 28
}
