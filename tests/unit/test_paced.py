"""The fleet's counts for STATUS (``daemon/publish.py`` rule 2): a read whose cost grows with the
fleet is done again only after 99 times as long as it took, so it never takes more than 1 % of
the time, at any fleet size. A clock of our own: no sleeping, no timing."""

from __future__ import annotations

from proxycheck.daemon.publish import COUNTS_SHARE, Paced


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reads_in(paced: Paced, clock: Clock, cost: float, seconds: float, every: float) -> int:
    """Heartbeats every ``every`` s for ``seconds``; each due one reads for ``cost`` s."""
    reads, end = 0, clock.now + seconds
    while clock.now < end:
        if paced.due():
            started = clock.now
            clock.now += cost
            paced.took(started)
            reads += 1
        clock.now += every
    return reads


def test_a_cheap_read_comes_at_every_heartbeat():
    clock = Clock()
    assert reads_in(Paced(COUNTS_SHARE, clock), clock, cost=0.045, seconds=600, every=5.0) >= 119


def test_a_costly_read_takes_at_most_its_share_of_the_time():
    for cost in (0.5, 3.0, 20.0):
        clock = Clock()
        reads = reads_in(Paced(COUNTS_SHARE, clock), clock, cost=cost, seconds=3600, every=5.0)
        assert reads * cost <= 3600 * COUNTS_SHARE + cost, (cost, reads)  # its share, and the first read
        assert reads * cost >= 3600 * COUNTS_SHARE * 0.5, (cost, reads)  # and it still comes


def test_the_first_read_is_due_at_once():
    clock = Clock()
    paced = Paced(COUNTS_SHARE, clock)
    assert paced.due()
    paced.took(clock.now - 1.0)  # it took 1 s
    assert not paced.due()
    clock.now += 98.9
    assert not paced.due()
    clock.now += 0.2
    assert paced.due()
