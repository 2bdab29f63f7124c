"""``proxycheck demo``: the whole product on loopback, with no network (see ``run.py``).

``run.py`` holds the orchestration and the ``FLEET`` table; the misbehaving proxies, the judge
and its throwaway certificate authority are the loopback world's (``proxycheck.world``), which the
tests and the benches use too.
"""

from .run import FLEET, run_demo

__all__ = ["FLEET", "run_demo"]
