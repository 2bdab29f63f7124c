"""The periodic jobs' table (``daemon/periodic.py``): the runner hands in exactly the jobs ``JOBS`` names."""

from __future__ import annotations

import pytest

from proxycheck.daemon.periodic import JOBS, Periodic


async def _turn() -> None:
    return None


@pytest.mark.parametrize("runs", [{}, {name: _turn for name in list(JOBS)[1:]}, {**dict.fromkeys(JOBS, _turn), "extra": _turn}],
                         ids=["none", "one-missing", "one-unknown"])
def test_every_job_and_only_those_is_given_a_body(runs):
    with pytest.raises(ValueError, match="periodic jobs are"):
        Periodic(runs, on_bug=lambda name, exc: None)


def test_the_jobs_and_their_interval_keys():
    assert {job_id: job.interval_key for job_id, job in JOBS.items()} == {
        "source_sync": "sync_interval", "retention": "retention_interval",
        "own_ip_refresh": "own_ip_interval", "heartbeat": "heartbeat_interval", "notify": "heartbeat_interval",
    }
    Periodic(dict.fromkeys(JOBS, _turn), on_bug=lambda name, exc: None)  # the right set is accepted
