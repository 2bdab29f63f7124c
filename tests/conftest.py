"""Shared fixtures. The loopback world (tests/world) is started once per session, on demand.

Without squid, tinyproxy, microsocks or pproxy the world tests are skipped with a loud reason;
with PROXYCHECK_REQUIRE_WORLD=1 (set in CI) they fail instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from world import World, missing_software, start_world


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that uses the world is a world test, marked or not: `-m "not world"` must skip it.
    for item in items:
        if "world" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.world)


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    """Judge + real proxies + fault servers on 127.0.0.0/8; see ``world.EXPECTATIONS``."""
    missing = missing_software()
    if missing:
        what = "; ".join(missing)
        if os.environ.get("PROXYCHECK_REQUIRE_WORLD") == "1":
            pytest.fail(f"PROXYCHECK_REQUIRE_WORLD=1 but the loopback world cannot start, missing: {what}", pytrace=False)
        pytest.skip(f"!!! LOOPBACK WORLD NOT AVAILABLE, world tests NOT RUN: missing {what}")
    built = start_world()
    try:
        yield built
    finally:
        built.stop()
