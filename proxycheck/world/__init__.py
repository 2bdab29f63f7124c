"""One loopback world for the demo, the tests and the benches: a judge, proxies, and their children.

Everything listens on its own address in 127.0.0.0/8, so who is who is told by address: the
checker is 127.0.0.1, a judge and each proxy have their own, and a proxy leaves from an egress
address of its own (the judge sees the proxy's exit, never the checker).

- ``procs``: child processes (start, wait until listening, stop by PID, reap with ``wait4``) and
  the one ``free_port``. The test world's real proxy software and the benches' squids, judge
  and daemons all run through ``procs.Child``.
- ``judge``: a fresh CA and the in-process judge (``certs`` makes the certificates).
- ``servers``: our own misbehaving proxies (a forward proxy with flags, a refused port, a
  blackhole, a silent listener). ``proxycheck demo`` stages its fleet with them alone, so it
  ships in the wheel and runs offline; the test world (tests/world) adds real proxy software
  and the fault servers only tests need.
"""

from .procs import Child, WorldError, accepts, free_port, stop_all, tail, wait_all

__all__ = ["Child", "WorldError", "accepts", "free_port", "stop_all", "tail", "wait_all"]
