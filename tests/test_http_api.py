"""The daemon's HTTP endpoint over real HTTP: worker routes, report, status, healthz, metrics."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli import run_cli
from test_daemon import NotifyListener, by_label, start_daemon, status_json, stop, wait_until, write_daemon_config

TOKEN = "s3cret-token"
NAMES = ["squid-anonymous", "squid-elite", "microsocks", "squid-forwarded-for", "refused"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api(world, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("http")
    port = free_port()
    extra = f'\n[http]\nenabled = true\nlisten = "127.0.0.1:{port}"\ntoken = "{TOKEN}"\n[worker]\nreprobe_after = 0.5\n'
    config = write_daemon_config(world, tmp_path, NAMES)
    config.write_text(config.read_text() + extra)
    assert run_cli("db", "upgrade", "--config", str(config)).returncode == 0
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = start_daemon(config, notify)
    try:
        notify.wait_for("READY=1", 20)
        wait_until(lambda: all(r["last_checked_at"] for r in status_json(config)["proxies"]), 30, "first checks")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        yield client, config, world
        client.close()
    finally:
        code, err = stop(proc)
        notify.close()
    assert code == 0, err
    assert TOKEN not in err


def test_token_required_except_healthz(api):
    client, _, _ = api
    bare = httpx.get(str(client.base_url) + "/status", trust_env=False)
    assert bare.status_code == 401
    health = httpx.get(str(client.base_url) + "/healthz", trust_env=False)
    assert health.status_code == 200 and health.json()["checker"] == "ok"


def test_status_is_status_json(api):
    client, config, _ = api
    body = client.get("/status").json()
    assert body["summary"]["counts"] == status_json(config)["summary"]["counts"]
    assert "right-pass" not in str(body)


def test_healthy_proxies_and_formats(api):
    client, _, world = api
    healthy = {p["url"] for p in client.get("/proxies/healthy").json()}
    assert healthy == {world.by_name(n).url for n in ("squid-anonymous", "squid-elite", "microsocks")}
    ac = client.get("/proxies/healthy", params={"format": "anticaptcha", "scheme": "socks5"}).json()
    assert len(ac) == 1 and ac[0]["proxyType"] == "socks5" and isinstance(ac[0]["proxyPort"], int)
    one = client.get("/proxy", params={"anonymity": "elite"}).json()
    assert one["url"] in {world.by_name("squid-elite").url, world.by_name("microsocks").url}
    none = client.get("/proxy", params={"tags": "nope"})
    assert none.status_code == 404 and none.json()["error"] == "no_healthy_proxy"


def test_report_takes_a_proxy_out(api):
    client, config, world = api
    target = world.by_name("squid-anonymous").url
    answer = client.post("/report", json={"proxy": target, "outcome": {"errorId": 29, "errorCode": "ERROR_PROXY_TRANSPARENT"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["applied"] and body["code"] == 29
    assert target not in {p["url"] for p in client.get("/proxies/healthy").json()}
    assert by_label(status_json(config))["squid-anonymous"]["state"] == "unhealthy"
    bad = client.post("/report", content=b"not json")
    assert bad.status_code == 400
    # The worker was wrong about it: the daemon's early re-probes pass and bring it back.
    wait_until(lambda: by_label(status_json(config))["squid-anonymous"]["state"] == "healthy", 30, "restored by re-probes")
    assert target in {p["url"] for p in client.get("/proxies/healthy").json()}


def test_client_mistakes_are_400s_that_say_what_is_wrong(api):
    client, _, world = api
    fmt = client.get("/proxies/healthy", params={"format": "capmonster"})
    assert fmt.status_code == 400 and "format: 'capmonster'" in fmt.json()["detail"]
    unknown = client.get("/proxy", params={"colour": "blue"})
    assert unknown.status_code == 400 and "unknown parameter 'colour'" in unknown.json()["detail"]
    target = world.by_name("refused").url  # already unhealthy: the report is stored, changes nothing
    odd_worker = client.post("/report", json={"proxy": target, "outcome": 30, "worker": {"x": 1}})
    assert odd_worker.status_code == 400 and "worker:" in odd_worker.json()["detail"]
    as_dict = client.post("/report", json={"proxy": {"url": target}, "outcome": 30, "worker": "w" * 300})
    assert as_dict.status_code == 200, as_dict.text
    assert as_dict.json()["why_not"] == "not_healthy"


def test_metrics_parse(api):
    client, config, _ = api
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    proxies = {s.labels["state"]: s.value for s in families["proxycheck_proxies"].samples}
    assert proxies == {k: float(v) for k, v in status_json(config)["summary"]["counts"].items()}
    assert families["proxycheck_checker_degraded"].samples[0].value == 0
    reports = {s.labels["error"]: s.value for s in families["proxycheck_worker_reports"].samples}
    assert reports.get("ERROR_PROXY_TRANSPARENT") == 1  # test_report_takes_a_proxy_out's report
    assert families["proxycheck_guard_rail_holding"].samples[0].value == 0
    by_code = families["proxycheck_unhealthy_proxies"].samples
    assert sum(s.value for s in by_code) == proxies["unhealthy"] and proxies["unhealthy"] > 0
    probes = {s.labels["probe"] for s in families["proxycheck_probe_duration_seconds"].samples}
    assert {"tcp_connect", "anonymity", "ssl", "images", "ban"} <= probes
    checks = {(s.labels["outcome"], s.labels["code"]) for s in families["proxycheck_checks"].samples if s.name.endswith("_total")}
    assert ("healthy", "") in checks and ("unhealthy", "25") in checks


def test_lease_and_release_over_http(api):
    client, config, world = api
    socks = world.by_name("microsocks").url
    assert httpx.post(str(client.base_url) + "/lease", json={}, trust_env=False).status_code == 401
    first = client.post("/lease", json={"scheme": "socks5", "ttl": 60, "worker": "w-http"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["proxy"]["url"] == socks and body["lease"] and body["expires_at"]
    again = client.post("/lease", json={"scheme": ["socks5"]})  # its only proxy is held
    assert again.status_code == 404 and "no proxy free to lease" in again.json()["detail"]
    assert again.json()["leases_held"] == 1
    shown = status_json(config)["summary"]["leases"]
    assert shown["held"] == 1 and shown["list"][0]["worker"] == "w-http" and shown["list"][0]["proxy"] == socks
    assert client.get("/status").json()["summary"]["leases"]["held"] == 1
    done = client.post(f"/lease/{body['lease']}/release", json={"outcome": {"errorId": 0, "solution": {}}})
    assert done.status_code == 200 and done.json() == {"lease": body["lease"], "released": True, "reported": True}
    assert client.post(f"/lease/{body['lease']}/release").json()["released"] is False
    ac = client.post("/lease", json={"scheme": "socks5", "format": "anticaptcha"}).json()
    assert ac["proxy"]["proxyType"] == "socks5"
    assert client.post(f"/lease/{ac['lease']}/release").json()["released"]
    bad = client.post("/lease", json={"colour": "blue"})
    assert bad.status_code == 400 and "unknown parameter 'colour'" in bad.json()["detail"]
    assert client.post("/lease", json={"ttl": "long"}).status_code == 400
    assert client.post("/lease", json=["socks5"]).status_code == 400
