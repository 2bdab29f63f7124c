"""New proxies get their first check within seconds, whatever ``[health].interval`` is (issue 10
§5), and ``status`` shows the stored checks at once: the installed CLI against the loopback world.

The config keeps the default ``interval = 300``: first checks used to be spread over that whole
interval, so a daemon checked six new proxies within 30 s with a probability of about 1e-6.
"""

from __future__ import annotations

import signal
from pathlib import Path

from daemons import run_cli, running_daemon, status_json, wait_until

FIRST = ["squid-anonymous", "squid-elite", "microsocks", "refused", "pproxy-socks4", "squid-no-images"]


def write_config(world, tmp_path: Path, names: list[str]) -> Path:
    csv = tmp_path / "proxies.csv"
    csv.write_text("url,label\n" + "".join(f"{world.by_name(n).url},{n}\n" for n in names))
    config = tmp_path / "proxycheck.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n' + Path(world.config_path).read_text()
                      + f'\n[daemon]\nsources = ["{csv}"]\ndispatch_interval = 0.2\n')
    return config


def checked(config: Path) -> dict[str, str | None]:
    return {row["label"]: row["last_checked_at"] for row in status_json(config)["proxies"] if row["state"] != "disabled"}


def test_new_proxies_are_checked_within_seconds_at_start_and_after_sighup(world, tmp_path):
    names = FIRST
    config = write_config(world, tmp_path, names)
    with running_daemon(config) as daemon:
        wait_until(lambda: all(checked(config).values()), 30, f"all {len(names)} new proxies checked")
        # The moment a check is stored, status shows a last round (not "never" until a heartbeat).
        summary = status_json(config)["summary"]
        assert summary["last_round_at"] is not None and summary["last_round_at"] >= max(checked(config).values())

        added = world.by_name("squid-forwarded-for")
        with (tmp_path / "proxies.csv").open("a") as csv:
            csv.write(f"{added.url},{added.name}\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: checked(config).get(added.name), 30, "the proxy added on SIGHUP checked")
    code, err = daemon.code, daemon.err
    assert code == 0, err



def test_the_dispatch_interval_does_not_cap_the_check_rate(world, tmp_path):
    """dispatcher.py rule 1: a look that took all it asked for looks again as slots free up. Six
    proxies imported due at once, 2 slots, a 60 s interval: one look per interval would check 2 a
    minute; freed slots refill at once, so all six are checked within seconds."""
    config = tmp_path / "proxycheck.toml"
    base = f'state_dir = "{tmp_path / "state"}"\n' + Path(world.config_path).read_text() + "\n[daemon]\ndispatch_interval = 60\n"
    config.write_text(base + "\n[check]\nconcurrency = 100\n")  # the import makes the six due at once
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    imported = run_cli("import", "--config", str(config), *(world.by_name(n).url for n in FIRST))
    assert imported.returncode == 0, imported.stderr
    config.write_text(base + "\n[check]\nconcurrency = 2\n")
    with running_daemon(config, upgrade=False):
        wait_until(lambda: all(r["last_checked_at"] for r in status_json(config)["proxies"]), 30,
                   f"all {len(FIRST)} proxies checked, 2 at a time")
