"""The loopback world: a judge, real proxy software and fault servers, each proxy with the
verdict a correct checker must reach. See ``build.py`` for the table and the address plan."""

from .build import CHECKER_IP, EXPECTATIONS, JUDGE_HOST, Expectation, World, WorldProxy, start_world
from .procs import WorldError
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
