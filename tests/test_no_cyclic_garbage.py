"""A check leaves no cyclic garbage (wire/http1.py rule 4, daemon/gc_policy.py).

CPython frees an object the moment its last reference goes, unless it sits in a reference cycle:
then only the cyclic collector finds it, by walking live objects. While every HTTP response left a
parser/collector cycle behind, the collector took 9 % of the daemon's CPU (bench/README.md, issue
21's fifth pass). Here every fixture of the loopback world, the healthy proxies and each way a
proxy fails, is checked in a process of its own (the world's judge runs in the test's process and
has garbage of its own) with the collector off; a full collection then finds what the checks left
in cycles.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.world

ROUNDS = 3

CHILD = textwrap.dedent("""
    import gc, json, sys
    from collections import Counter
    from proxycheck import loop
    from proxycheck.checker import Checker
    from proxycheck.config import load_settings
    from proxycheck.proxy import parse_proxy_url

    config, rounds, names, urls = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4:]
    checker = Checker(load_settings(config, environ={}))
    found = {}

    async def main():
        status = await checker.preflight()
        assert status.ok, status.reason
        for name, url in zip(names, urls):
            proxy = parse_proxy_url(url)
            await checker.check(proxy, status.own_ips)  # the first fills caches (TLS sessions, host names)
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            for _ in range(rounds):
                await checker.check(proxy, status.own_ips)
            gc.collect()
            found[name] = dict(Counter(type(o).__module__ + "." + type(o).__qualname__ for o in gc.garbage))
            found[name + "/frames"] = dict(Counter(f"{o.f_code.co_filename.rsplit('/', 2)[-1]}:{o.f_code.co_name}:{o.f_lineno}" for o in gc.garbage if type(o).__name__ == "frame"))
            gc.set_debug(0)
            gc.garbage.clear()
            gc.collect()
            gc.enable()

    loop.run(main())
    print(json.dumps(found))
""")


@pytest.fixture(scope="module")
def leftovers(world) -> dict[str, dict[str, int]]:
    """Fixture name -> type -> objects its ``ROUNDS`` checks left in cycles."""
    names = [f.name for f in world.fixtures]
    proc = subprocess.run([sys.executable, "-c", CHILD, str(world.config_path), str(ROUNDS), ",".join(names),
                           *(f.url for f in world.fixtures)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_check_leaves_nothing_in_cycles(world, leftovers):
    """Healthy proxies and every failure the world has (refused, silent, 407, 403 to CONNECT, a
    TLS interceptor, banned exits ...): nothing for the collector. The frames in the message say
    where a new cycle was made."""
    checked = {name for name in leftovers if "/" not in name}
    assert checked == {f.name for f in world.fixtures}
    left = {name: {**leftovers[name], **leftovers[name + "/frames"]} for name in checked if leftovers[name]}
    assert not left, f"objects left in reference cycles by {ROUNDS} checks of each: {left}"
