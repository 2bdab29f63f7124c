"""The probe suite: one ordered registry, ``REGISTRY``, which everything else derives from.

Order matters: an earlier failure explains the later ones (no point testing images through a
proxy that refuses connections), so the checker stops at the first failure.

Who reads the registry (``probes.REGISTRY``, looked up when used, so a probe registered at run
time is everyone's at once):
- ``checker.py`` runs it in order and fills the result's summary from each spec's ``summary``;
- ``selftest.py`` (the checker's self-test) fetches exactly the targets the specs declare, plus
  the IP echo, asking each what its probe will ask (each spec's ``selftest``);
- ``doctor`` prints the self-test's finding for each target;
- ``config_targets.py`` builds ``[targets]`` from the specs' ``TargetSpec`` (keys, defaults, docs:
  the loader, ``config check``, the reference and the example config's keys), and renders
  ``[targets]`` pointing at a judge for the demo, the test world and the benches;
- ``judge.py`` serves the routes the specs declare for their targets (``TargetSpec.serve``).

Adding a failure mode (say, "the proxy strips cookies"), as docs/development.md details:
1. ``probes/cookies.py``: ``run(ctx)`` returning ``ok()``/``fail(reason, detail)``; a ``selftest``
   asking its target what ``run`` asks it; ``SPEC = ProbeSpec("cookies", run,
   targets=(TargetSpec("cookie_url", default, doc, offline=("{http}/cookies",)),),
   selftest=selftest)``. It never catches: the wire raises typed errors and
   ``classify.VERDICTS`` turns them into verdicts.
2. One line in ``REGISTRY`` below, where it belongs in the order.
3. One row in ``verdict.REASONS`` for its new reason (``"cookies_stripped": Reason(36, ...)``).
4. Test rows: its pure part in tests/unit/, and a fixture row in the world table
   (tests/world/build.py ``EXPECTATIONS``) with a proxy that fails it.
tests/test_new_probe.py registers a throw-away probe at run time and shows nothing else needs
an edit. A new kind of *wire* failure (not a new probe) is one class in ``wire/errors.py`` and
one row in ``classify.VERDICTS``; tests/unit/test_classify.py fails until the row exists.
"""

from __future__ import annotations

from . import anonymity, ban, images, long_get, ssl_tunnel, tcp_connect
from .base import Probe, ProbeSpec

REGISTRY: tuple[ProbeSpec, ...] = (
    tcp_connect.SPEC,  # 25, 26
    anonymity.SPEC,  # 49 (forwarded GET), 27, 29
    ssl_tunnel.SPEC,  # 49 (CONNECT), 36 (no tunnel / TLS)
    long_get.SPEC,  # 36
    images.SPEC,  # 35
    ban.SPEC,  # 28
)

# name -> coroutine, for callers that only want the names in order.
SUITE: dict[str, Probe] = {spec.name: spec.run for spec in REGISTRY}


def declared_targets() -> tuple[str, ...]:
    """Every ``[targets]`` key some registered probe uses, in registry order."""
    return tuple(dict.fromkeys(key for spec in REGISTRY for key in spec.target_keys))
