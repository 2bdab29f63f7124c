"""The test world: the loopback world (``proxycheck.world``: judge, child processes, port faults)
with real proxy software and the fault servers only tests need, each proxy with the verdict a
correct checker must reach. See ``build.py`` for the table and the address plan."""

from proxycheck.world import WorldError

from .build import CHECKER_IP, EXPECTATIONS, JUDGE_HOST, Expectation, World, WorldProxy, start_world
from .software import missing_software

__all__ = [
    "CHECKER_IP",
    "EXPECTATIONS",
    "JUDGE_HOST",
    "Expectation",
    "World",
    "WorldError",
    "WorldProxy",
    "missing_software",
    "start_world",
]
