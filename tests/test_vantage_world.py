"""IP-locked proxies named before a task fails (vantage.py), on loopback.

One real squid with three ports: ``open`` lets anyone in, ``locked`` lets only 127.0.26.2 in
(others get 403: a refused request, 25), ``locked-auth`` lets it in without a login and
asks anyone else for one (407: 49) while the row has no credentials, the IP-authorised proxy of
issue 19. The checker's vantages leave from 127.0.26.2 (``a``) and 127.0.26.3 (``b``):

- ``check --json`` with both vantages in one config (``[check].vantages``);
- one daemon on SQLite with both vantages;
- two daemons on one PostgreSQL, one vantage each: each reads the other's latest checks.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cli import run_json
from daemons import running_daemon, status_json, wait_until
from world import software

from proxycheck.worker import ProxyPool
from proxycheck.world import free_port, wait_all

pytestmark = pytest.mark.world

LISTEN, EGRESS = "127.0.24.1", "127.0.25.1"
A, B = "127.0.26.2", "127.0.26.3"  # not 127.0.0.2: the world's judge listens there
# name -> (allow_src, auth, expected (code, reason))
PORTS = {
    "open": (None, False, (None, None)),
    "locked": (A, False, (25, "ip_locked")),
    "locked-auth": (A, True, (49, "ip_locked")),
}


@pytest.fixture(scope="module")
def squid(world):
    ports = {name: free_port(LISTEN) for name in PORTS}
    inst = software.SquidInstance("vantage", tuple(
        software.SquidPort(name.replace("-", "_"), LISTEN, ports[name], EGRESS, auth=auth, allow_src=src)
        for name, (src, auth, _) in PORTS.items()))
    workdir = world.workdir / "vantage"
    workdir.mkdir(exist_ok=True)
    workdir.chmod(0o777)  # squid drops privileges to `proxy` and writes its logs here
    htpasswd = workdir / "htpasswd"
    software.write_htpasswd(htpasswd, "someone", "secret-not-used")
    child = software.squid(inst, workdir, htpasswd)
    child.spawn()
    try:
        wait_all([child], 20)
        yield {name: f"http://{LISTEN}:{port}" for name, port in ports.items()}
    finally:
        child.signal(15)
        child.reap(time.monotonic() + 5)


def write_config(world, tmp_path: Path, *, vantage: str, source: str, extra: tuple[str, ...] = (), database_url: str = "",
                 urls: dict[str, str] | None = None) -> Path:
    lines = [f'state_dir = "{tmp_path / "state"}"']
    if database_url:
        lines.append(f'database_url = "{database_url}"')
    lines.append(Path(world.config_path).read_text())
    lines += ["[check]", f'vantage = "{vantage}"', f'source_address = "{source}"',
              "vantages = [" + ", ".join(f'"{v}"' for v in extra) + "]",
              "[solver]", 'services = ["capmonster"]']
    if urls is not None:
        csv = tmp_path / "proxies.csv"
        csv.write_text("url,label\n" + "".join(f"{url},{name}\n" for name, url in urls.items()))
        lines += ["[daemon]", f'sources = ["{csv}"]', "dispatch_interval = 0.2", "drain_grace = 10.0",
                  "[health]", "interval = 3.0", "fast_interval = 2.0", "failing_interval = 2.0", "max_interval = 4.0",
                  "[worker]", "max_age = 300.0"]  # the hand-outs below come after the daemon stopped
    path = tmp_path / "proxycheck.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_verdicts(rows: dict[str, dict]) -> None:
    for name, (_, _, (code, reason)) in PORTS.items():
        row = rows[name]
        assert (row["code"], row["reason"]) == (code, reason), row
        if reason == "ip_locked":
            assert f"accepts {A} only" in row["detail"], row["detail"]
            assert "65.21.190.34" in row["detail"], row["detail"]  # capmonster's allow-list address


def test_check_json_names_the_ip_locked_proxy(world, squid, tmp_path):
    config = write_config(world, tmp_path, vantage="a", source=A, extra=(f"b={B}",))
    proc, data = run_json("check", "--config", str(config), "--json", *squid.values())
    print(proc.stdout)  # the report quotes it
    assert proc.returncode == 1, proc.stderr
    rows = dict(zip(squid, data))
    assert_verdicts(rows)
    assert rows["open"]["healthy"] is True
    assert [(s["vantage"], s["seen"]) for s in rows["open"]["vantages"]] == [("a", "in"), ("b", "in")]
    locked = rows["locked-auth"]
    assert locked["probe"] == "vantage" and locked["error"] == "ERROR_PROXY_NOT_AUTHORISED"
    assert [(s["vantage"], s["address"], s["seen"], s["reason"]) for s in locked["vantages"]] == [
        ("a", A, "in", None), ("b", B, "refused", "auth_required")]


def test_one_daemon_with_two_vantages_on_sqlite(world, squid, tmp_path):
    config = write_config(world, tmp_path, vantage="a", source=A, extra=(f"b={B}",), urls=squid)
    with running_daemon(config, checked=30):
        rows = {r["label"]: r for r in status_json(config)["proxies"]}
    assert_verdicts(rows)
    assert rows["open"]["state"] == "healthy"
    assert rows["locked"]["state"] == "unhealthy" and rows["locked-auth"]["state"] == "unhealthy"
    # status and history show the proxy per vantage
    assert {(s["vantage"], s["seen"]) for s in rows["locked"]["vantages"]} == {("a", "in"), ("b", "refused")}
    proc, history = run_json("history", "--config", str(config), "--json", squid["locked-auth"])
    assert proc.returncode == 0, proc.stderr
    latest = history["checks"][0]
    assert (latest["vantage"], latest["vantage_ip"], latest["reason"]) == ("a", A, "ip_locked"), latest
    assert [(s["vantage"], s["seen"], s["reason"]) for s in latest["vantages"]] == [
        ("a", "in", None), ("b", "refused", "auth_required")]
    # handed out only once the user says the services' addresses are on the allow-list
    assert {p.label for p in ProxyPool(config=config).get_all()} == {"open"}
    allowed = tmp_path / "allowed.toml"
    allowed.write_text(config.read_text().replace("[solver]", "[solver]\nallow_ip_locked = true"))
    assert {p.label for p in ProxyPool(config=allowed).get_all()} == {"open", "locked", "locked-auth"}


@pytest.mark.postgres
def test_two_daemons_on_postgresql_compare_what_each_sees(world, squid, tmp_path, pg_url):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    config_a = write_config(world, a_dir, vantage="a", source=A, database_url=pg_url, urls=squid)
    config_b = write_config(world, b_dir, vantage="b", source=B, database_url=pg_url, urls=squid)

    def locked() -> dict[str, dict] | None:
        rows = {r["label"]: r for r in status_json(config_a)["proxies"]}
        done = all(rows[n]["reason"] == "ip_locked" for n in ("locked", "locked-auth")) and all(
            {s["vantage"] for s in row["vantages"]} == {"a", "b"} for row in rows.values())
        return rows if done else None

    with running_daemon(config_a, checked=30), running_daemon(config_b, upgrade=False, notify=b_dir / "notify.sock"):
        rows = wait_until(locked, 40, "every proxy checked from both daemons, the locked ones named ip_locked")
    assert_verdicts(rows)
    assert rows["open"]["state"] == "healthy"
    for name in ("locked", "locked-auth"):  # each daemon's own check, read back per vantage
        assert {(s["vantage"], s["seen"]) for s in rows[name]["vantages"]} == {("a", "in"), ("b", "refused")}
    assert {(s["vantage"], s["seen"]) for s in rows["open"]["vantages"]} == {("a", "in"), ("b", "in")}
