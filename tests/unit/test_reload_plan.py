"""SIGHUP as a plan (pure, ``daemon/reload.py``): literal settings in, what is applied, what needs a
restart, and whether the checker is rebuilt out. The runner only applies it (``test_daemon_runner.py``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from proxycheck.config import Settings
from proxycheck.daemon.reload import plan

OLD = Settings(database_url="sqlite:////var/lib/proxycheck/proxycheck.db", state_dir="/var/lib/proxycheck")
SERVING = replace(OLD, http=replace(OLD.http, enabled=True))
WORKER_NOTE = "[worker] (for the HTTP endpoint; the daemon itself uses it now)"


def edit(s: Settings, section: str, **changes: object) -> Settings:
    return replace(s, **{section: replace(getattr(s, section), **changes)})


ROWS = [
    # (id, old, new, applied, restart, new checker)
    ("nothing", OLD, OLD, (), (), False),
    ("targets", OLD, edit(OLD, "targets", judge_url="http://127.0.0.1:8080/get"), ("[targets]",), (), True),
    ("timeouts", OLD, edit(OLD, "timeouts", read=3.0), ("[timeouts]",), (), True),
    ("probes", OLD, edit(OLD, "probes", long_get_bytes=4096), ("[probes]",), (), True),
    ("geo", OLD, edit(OLD, "geo", database="/var/lib/GeoIP/GeoLite2-Country.mmdb"), ("[geo]",), (), True),
    ("check", OLD, edit(OLD, "check", concurrency=7), ("[check]",), (), False),
    ("check-vantage", OLD, edit(OLD, "check", vantage="fra-2"), ("[check]",), (), True),
    ("solver", OLD, edit(OLD, "solver", services=("capmonster",)), ("[solver]",), (), True),
    ("health", OLD, edit(OLD, "health", interval=60.0), ("[health]",), (), False),
    ("daemon", OLD, edit(OLD, "daemon", retention_interval=1.0), ("[daemon]",), (), False),
    ("worker", OLD, edit(OLD, "worker", strategy="fastest"), ("[worker]",), (), False),
    ("worker-serving", SERVING, edit(SERVING, "worker", strategy="fastest"), ("[worker]",), (WORKER_NOTE,), False),
    ("state_dir", OLD, replace(OLD, state_dir="/elsewhere"), (), ("state_dir",), False),
    ("database_url", OLD, replace(OLD, database_url="postgresql://proxycheck@db/proxycheck"), (), ("database_url",), False),
    ("http-listen", OLD, edit(OLD, "http", listen="127.0.0.1:9999"), (), ("[http].listen",), False),
    ("http-token", OLD, edit(OLD, "http", token="a-new-secret"), (), ("[http].token",), False),
    ("http-allowed-hosts", OLD, edit(OLD, "http", allowed_hosts=("proxycheck.example",)), (),
     ("[http].allowed_hosts",), False),
    # Turning the endpoint on needs a restart; it is not running yet, so [worker] is simply applied.
    ("http-enabled-and-worker", OLD, edit(edit(OLD, "http", enabled=True), "worker", max_age=60.0), ("[worker]",),
     ("[http].enabled",), False),
    ("several", OLD, edit(edit(replace(OLD, state_dir="/x"), "check", concurrency=3), "targets", ip_url="http://127.0.0.1:1/ip"),
     ("[targets]", "[check]"), ("state_dir",), True),
]


@pytest.mark.parametrize(("old", "new", "applied", "restart", "new_checker"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_plan(old, new, applied, restart, new_checker):
    p = plan(old, new)
    assert (p.applied, p.restart, p.new_checker) == (applied, restart, new_checker)
    # What runs from now on: the new file, with the keys that need a restart as they were.
    assert p.settings == replace(new, database_url=old.database_url, state_dir=old.state_dir, http=old.http)


def test_the_plan_logs_what_it_applied_and_what_needs_a_restart(caplog):
    p = plan(OLD, edit(replace(OLD, state_dir="/x"), "check", concurrency=3))
    with caplog.at_level("INFO", logger="proxycheck.daemon"):
        p.log()
    assert [r.getMessage() for r in caplog.records] == [
        "changed settings that need a restart (`systemctl restart proxycheck`), kept as they were: state_dir",
        "reloaded: applied [check]",
    ]
    caplog.clear()
    with caplog.at_level("INFO", logger="proxycheck.daemon"):
        plan(OLD, OLD).log()
    assert [r.getMessage() for r in caplog.records] == ["reloaded: no setting changed"]
