"""Sticky exits judged by the daemon itself: ``proxycheck run`` against the loopback world.

The schedule keeps the default shape, scaled down by 50: ``[health].interval`` 300 s -> 6 s,
``[probes].sticky_seconds`` 120 s -> 4 s (shorter than the interval, as at the defaults). Every
reading here comes from a visit the daemon made; the test only reads the database, the status
and the worker API (sticky.py rule 6: the daemon brings a visit forward when it needs a reading).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

import proxycheck
from proxycheck import NoHealthyProxy
from proxycheck.proxy import parse_proxy_url
from proxycheck.store import make_engine
from proxycheck.store.exits import readings as exit_readings
from proxycheck.store.models import ProxyRow
from daemons import running_daemon, status_json, wait_until

pytestmark = pytest.mark.world

INTERVAL = 6.0  # [health].interval, 300 s scaled down
WINDOW = 4.0  # [probes].sticky_seconds, 120 s scaled down
JITTER = 0.1  # [health].jitter (the default)
ROTATE_EVERY = 3.0  # the rotating fixture's own clock: any 4 s holds a change


def write_config(world, tmp_path: Path, *, dispatch_interval: float) -> Path:
    squid = world.by_name("squid-anonymous").url
    gateway = world.rotating_url.replace("http://", "http://gw@")
    csv = tmp_path / "proxies.csv"
    csv.write_text(f"url,label,tags\n{world.rotating_url},rotator,\n{gateway},gateway,rotating\n{squid},squid,\n")
    path = tmp_path / "proxycheck.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n' + Path(world.config_path).read_text()
        + f'\n[daemon]\nsources = ["{csv}"]\ndispatch_interval = {dispatch_interval}\ndrain_grace = 10.0\n'
        + f"\n[health]\ninterval = {INTERVAL}\nfast_interval = 3.0\nfailing_interval = 3.0\nmax_interval = 6.0\n"
        + f"jitter = {JITTER}\n\n[probes]\nsticky_seconds = {WINDOW}\n"
    )
    return path


def exits(config: Path) -> dict[str, dict]:
    return {row["label"]: row["exit"] for row in status_json(config)["proxies"]}


def readings(tmp_path: Path) -> dict[str, list]:
    """Each proxy's stored exit readings (time, IP), oldest first, by label."""
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'proxycheck.db'}", writer=False)
    try:
        with engine.connect() as conn:
            labels = dict(conn.execute(select(ProxyRow.id, ProxyRow.label)).all())
            return {labels[pid]: kept for pid, kept in exit_readings(conn, labels).items()}
    finally:
        engine.dispose()


def gaps(seen: list) -> list[float]:
    return [(b[0] - a[0]).total_seconds() for a, b in zip(seen, seen[1:])]


@pytest.fixture
def rotating_clock(world):
    """The rotating fixture changes its exit every ``ROTATE_EVERY`` seconds on its own."""
    stop_event = threading.Event()

    def tick() -> None:
        while not stop_event.wait(ROTATE_EVERY):
            world.rotating_exit.rotate()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield
    stop_event.set()
    thread.join()
    world.rotating_exit.reset()


def test_the_daemon_reads_exits_within_the_window_and_judges_them(world, tmp_path, rotating_clock):
    config = write_config(world, tmp_path, dispatch_interval=0.2)
    squid = parse_proxy_url(world.by_name("squid-anonymous").url)
    with running_daemon(config, notify=False) as daemon:
        judged = wait_until(lambda: (e := exits(config)) and e["squid"]["state"] == "stable"
                            and e["rotator"]["state"] == "rotating" and e, 40, "squid stable and the rotator rotating")
        assert judged["gateway"]["state"] == "gateway", judged
        assert set(judged["rotator"]["ips"]) == {"127.0.2.26", "127.0.3.26"}, judged
        pool = proxycheck.configure(config=str(config))
        try:
            for strategy in ("random", "fastest", "least_used", "round_robin"):
                assert proxycheck.get_healthy_proxy(sticky=True, strategy=strategy).key == squid.key
            assert {p.key for p in proxycheck.get_healthy_proxies(sticky=True)} == {squid.key}
            assert len(proxycheck.get_healthy_proxies()) == 3  # rotating is a fact, not a failure
        finally:
            pool.close()
            proxycheck.worker._default = None

        # The daemon's own visits made squid's readings: follow-ups less than the window apart,
        # although its health interval (less jitter) is longer than the window.
        seen = readings(tmp_path)
        chain = gaps(seen["squid"])[:2]
        assert all(gap < WINDOW for gap in chain) and sum(chain) >= WINDOW, seen["squid"]
        assert INTERVAL * (1 - JITTER) > WINDOW
        # Once judged, squid is visited at its health interval again (no follow-up storm), and
        # the tagged gateway never gets a follow-up.
        wait_until(lambda: len(readings(tmp_path)["squid"]) >= 5, 30, "two more visits of squid")
        seen = readings(tmp_path)
        assert all(gap >= INTERVAL * (1 - JITTER) - 0.5 for gap in gaps(seen["squid"])[2:]), seen["squid"]
        assert all(gap >= INTERVAL * (1 - JITTER) - 0.5 for gap in gaps(seen["gateway"])), seen["gateway"]
        assert exits(config)["squid"]["state"] == "stable"
    assert daemon.code == 0, daemon.err


def test_readings_an_interval_apart_never_make_a_proxy_stable(world, tmp_path):
    """The daemon looks for due proxies only once an interval, so it cannot bring a visit
    forward: every reading is an interval apart, as before follow-up visits existed. However
    long one IP holds, nothing was seen in between: squid stays unconfirmed, never sticky."""
    config = write_config(world, tmp_path, dispatch_interval=INTERVAL)
    with running_daemon(config, notify=False) as daemon:
        def settled() -> bool:
            seen = readings(tmp_path).get("squid", [])
            if seen:
                state = exits(config)["squid"]["state"]
                assert state == "unconfirmed", (state, seen)
            return len(seen) >= 4

        wait_until(settled, 40, "four readings of squid")
        seen = readings(tmp_path)["squid"]
        assert all(gap >= WINDOW for gap in gaps(seen)) and seen[-1][0] - seen[0][0] >= timedelta(seconds=3 * WINDOW)
        assert len({ip for _, ip in seen}) == 1, seen
        pool = proxycheck.configure(config=str(config))
        try:
            with pytest.raises(NoHealthyProxy, match="sticky exit"):
                proxycheck.get_healthy_proxy(sticky=True)
            assert {p.key for p in proxycheck.get_healthy_proxies()} >= {parse_proxy_url(world.by_name("squid-anonymous").url).key}
        finally:
            pool.close()
            proxycheck.worker._default = None
    assert daemon.code == 0, daemon.err
