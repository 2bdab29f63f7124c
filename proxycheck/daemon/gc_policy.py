"""How the daemon's process uses CPython's cyclic garbage collector.

CPython frees most objects by reference counting, the moment they are last used; the cyclic
collector is for objects in reference cycles, and it finds them by walking the live objects of a
generation. Its defaults (a young collection every 700 new container objects) suit small scripts,
not a daemon with 200 checks in flight: each check holds hundreds of containers for about a
second, so the youngest generation filled several times a second, the in-flight objects were
walked, moved to older generations and walked again there, and every few seconds a full
collection walked all of them plus the ~120,000 objects made at start-up. Measured with
``bench/daemon_bench.py --live`` at 100,000 proxies on SQLite (collector time per generation from
``gc.callbacks``, CPU since READY): 4.6 s of 52.5 s, 9 % of the daemon's CPU, 0.29 ms per check;
with these rules 0.4 s (0.7 %).

Rules (for ``proxycheck run``'s own process only: ``runner.run_daemon`` applies them; a daemon run
inside another process, the demo or a test, leaves that process's collector alone, since freezing
also hides objects from ``gc.get_objects`` and ``gc.get_referrers``, which such hosts may use):
1. ``tune()`` at start: the youngest generation is collected after ``YOUNG`` (10,000) net new
   container objects. In-flight checks come and go without filling it, so they are seldom
   walked and seldom promoted.
2. ``freeze_startup()`` just before READY: a full collection, then ``gc.freeze()``. What start-up
   made (modules, SQLAlchemy's tables and cached statements, the CA bundle, the settings) lives
   as long as the process; frozen, no later collection walks it. A frozen object that is later
   dropped inside a cycle is never freed: a one-time loss of what start-up made, never a growing
   one.
3. This is safe for memory only because a check leaves nothing in cycles
   (tests/test_no_cyclic_garbage.py; wire/http1.py rule 4): garbage that only the collector can
   free stays below ``YOUNG`` objects, a few megabytes at most.
"""

from __future__ import annotations

import gc

YOUNG = 10_000


def tune() -> None:
    """Rule 1 (the older generations keep CPython's thresholds)."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, older, oldest)


def freeze_startup() -> None:
    """Rule 2."""
    gc.collect()
    gc.freeze()


__all__ = ["YOUNG", "freeze_startup", "tune"]
