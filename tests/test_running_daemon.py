"""``running_daemon`` (tests/daemons.py), the one way tests run the installed daemon: it never
leaves a daemon behind, and the daemon reads the test's config only.

No world needed: every target is a closed loopback port, so the checker is degraded, which
does not keep the daemon from running or from sending READY=1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from daemons import running_daemon

CLOSED = "http://127.0.0.1:9"


def offline_config(tmp_path: Path) -> Path:
    csv = tmp_path / "proxies.csv"
    csv.write_text("url,label\nhttp://127.0.0.1:9,closed\n")
    targets = "\n".join(f'{k} = "{CLOSED}/{k}"' for k in ("judge_url", "ip_url", "long_get_url", "ban_url"))
    config = tmp_path / "proxycheck.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[targets]\n{targets}\nssl_url = "https://127.0.0.1:9/"\n'
                      f'image_urls = ["{CLOSED}/i.png"]\n[daemon]\nsources = ["{csv}"]\n')
    return config


def test_a_failing_block_still_stops_and_reaps_the_daemon(tmp_path):
    config = offline_config(tmp_path)
    with pytest.raises(ZeroDivisionError):
        with running_daemon(config) as daemon:
            assert daemon.proc.poll() is None and "READY=1" in "\n".join(daemon.notify.messages)
            1 / 0
    assert daemon.proc.returncode == 0 and daemon.code == 0, daemon.err  # SIGTERM: an orderly stop, reaped
    assert "stopped after" in daemon.err
    assert daemon.stop() == (0, daemon.err)  # stopping again changes nothing


def test_the_daemon_reads_the_tests_config_not_the_environment(tmp_path, monkeypatch):
    config = offline_config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("PROXYCHECK_DATABASE_URL", f"sqlite:///{elsewhere / 'other.db'}")
    with running_daemon(config) as daemon:
        pass
    assert daemon.code == 0, daemon.err
    assert (tmp_path / "state" / "proxycheck.db").exists() and not (elsewhere / "other.db").exists()
