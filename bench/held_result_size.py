"""Memory per completed check the daemon holds while the database is down (writer.py, rule 3).

Real checks (a healthy squid, a squid with a login, a refused port) through the loopback world,
each copied 1000 times (unpickled, so no string is shared) under tracemalloc:

    .venv/bin/python bench/held_result_size.py
"""
import asyncio
import pickle
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from world import start_world
from proxycheck.checker import Checker
from proxycheck.config import load_settings
from proxycheck.health import HealthState
from proxycheck.proxy import parse_proxy_url
from proxycheck.store.leases import Claim
from proxycheck.daemon.writer import Done

w = start_world()
try:
    settings = load_settings(str(w.config_path))
    checker = Checker(settings)
    async def go():
        st = await checker.preflight()
        out = {}
        for name in ("squid-anonymous", "squid-auth-right-password", "refused"):
            p = parse_proxy_url(w.by_name(name).url)
            r = await checker.check(p, st.own_ips)
            now = datetime.now(UTC)
            out[name] = Done(Claim(1, p, "0123456789abcdef0123456789abcdef", HealthState(), now, now), r)
        return out
    samples = asyncio.run(go())
finally:
    w.stop()
for name, done in samples.items():
    blob = pickle.dumps(done)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = [pickle.loads(blob) for _ in range(1000)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"{name}: {(after - before) / 1000:.0f} bytes per held result ({len(done.result.probes)} probes)")
