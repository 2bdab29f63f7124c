"""``proxycheck demo``: the whole product on loopback, with no network (see ``run.py``).

``proxies.py`` holds the small misbehaving proxies, ``certs.py`` the throwaway HTTPS certificate
authority, ``run.py`` the orchestration and the ``FLEET`` table.
"""

from .run import FLEET, run_demo

__all__ = ["FLEET", "run_demo"]
