"""The table test: every fixture of the loopback world, through the real `proxycheck check`.

Each row names real proxy software (or a fault server for what real software cannot do) and the
anti-captcha code a correct checker predicts. Every code 25-29, 35, 36, 49 appears at least once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli import run_cli, run_json
from world import EXPECTATIONS

IN_SCOPE = {25, 26, 27, 28, 29, 35, 36, 49}


def test_every_code_in_scope_has_a_fixture():
    assert {e.expected_code for e in EXPECTATIONS if e.expected_code} == IN_SCOPE


@pytest.fixture(scope="module")
def world_report(world):
    """One `proxycheck check --json` over the whole world (concurrently, as users run it)."""
    urls = [p.url for p in world.fixtures]
    proc, data = run_json("check", "--config", str(world.config_path), "--json", *urls)
    assert proc.returncode == 1, proc.stderr  # some proxies are bad by design
    assert len(data) == len(urls)
    by_name = {fixture.name: row for fixture, row in zip(world.fixtures, data)}  # output keeps input order
    for fixture in world.fixtures:
        assert by_name[fixture.name]["proxy"] == re.sub(r":[^:@/]+@", ":***@", fixture.url)
    return world, by_name, proc


@pytest.mark.parametrize("expectation", EXPECTATIONS, ids=lambda e: e.name)
def test_fixture_verdict(world_report, expectation):
    world, by_name, _ = world_report
    fixture = world.by_name(expectation.name)
    row = by_name[expectation.name]
    assert row["code"] == expectation.expected_code, row
    assert row["reason"] == expectation.expected_reason_hint, row
    if expectation.expected_code is None:
        assert row["healthy"] is True
        assert row["anonymity"] == expectation.anonymity
        assert row["exit_ip"] == fixture.egress
        assert all(p["ok"] for p in row["probes"])
    else:
        assert row["healthy"] is False
        assert row["error"].startswith("ERROR_PROXY_")
        failed = [p for p in row["probes"] if not p["ok"] and not p.get("skipped")]
        assert [p["name"] for p in failed] == [row["probe"]]
        host = fixture.url.split("//")[1].split("@")[-1].rsplit(":", 1)[0]
        assert host in row["detail"], row["detail"]
    assert any("loopback" in w for w in row["warnings"])


def test_passwords_never_printed(world_report):
    world, _, proc = world_report
    secrets = {p.url.split(":")[2].split("@")[0] for p in world.fixtures if "@" in p.url}
    assert secrets
    for secret in secrets:
        assert secret not in proc.stdout and secret not in proc.stderr


def test_transparent_detail_names_the_header(world_report):
    _, by_name, _ = world_report
    row = by_name["squid-forwarded-for"]
    assert "X-Forwarded-For: 127.0.0.1" in row["detail"] and "our address" in row["detail"]


def test_connect_denied_detail(world_report):
    _, by_name, _ = world_report
    row = by_name["squid-no-connect"]
    assert re.search(r"answered 403 Forbidden to CONNECT 127\.0\.0\.2:\d+", row["detail"]), row["detail"]


def test_silent_socks5_ends_on_time(world_report):
    _, by_name, _ = world_report
    row = by_name["silent-socks5"]
    probe = next(p for p in row["probes"] if p["name"] == row["probe"])
    assert probe["elapsed_ms"] < 4000 + 500  # the [timeouts].probe deadline of the world config, plus slack


def test_azenv_judge_gives_the_same_verdicts(world, tmp_path):
    config = Path(world.config_path).read_text().replace("/get\"", "/azenv\"")
    path = tmp_path / "azenv.toml"
    path.write_text(config)
    names = ["squid-anonymous", "squid-elite", "squid-forwarded-for", "tinyproxy-xtinyproxy", "microsocks"]
    proc, data = run_json("check", "--config", str(path), "--json", *(world.by_name(n).url for n in names))
    assert [(r["code"], r["anonymity"]) for r in data] == [(None, "anonymous"), (None, "elite"), (29, "transparent"), (29, "transparent"), (None, "elite")]


def test_table_output_without_terminal(world):
    proc = run_cli("check", "--config", str(world.config_path), world.by_name("squid-no-connect").url, world.by_name("squid-anonymous").url)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any("36 ERROR_PROXY_INCOMPATIBLE_HTTP_VERSION" in line and "probe=ssl" in line for line in lines)
    assert any(line.startswith(world.by_name("squid-anonymous").url + "  healthy") for line in lines)
    assert "proxycheck explain 36" in proc.stdout


def test_all_healthy_exits_zero(world):
    proc = run_cli("check", "--config", str(world.config_path), world.by_name("squid-elite").url)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_judge_down_blames_no_proxy(world, tmp_path):
    """Never blame a proxy for our own trouble: a dead judge means exit 3 and no codes."""
    config = re.sub(r"judge_url = \"http://127\.0\.0\.2:\d+", 'judge_url = "http://127.0.0.2:9', Path(world.config_path).read_text())
    path = tmp_path / "deadjudge.toml"
    path.write_text(config)
    proc, data = run_json("check", "--config", str(path), "--json", world.by_name("squid-anonymous").url, world.by_name("refused").url)
    assert proc.returncode == 3
    for row in data:
        assert row["healthy"] is None and row["code"] is None and row["reason"] == "checker_unavailable"
        assert "cannot reach http://127.0.0.2:9" in row["detail"]


def test_csv_input_with_a_bad_row(world, tmp_path):
    good = world.by_name("squid-anonymous").url
    csv = tmp_path / "p.csv"
    csv.write_text(f"url,tags\n{good},a\nftp://1.2.3.4:21,b\n")
    proc, data = run_json("check", "--config", str(world.config_path), "--json", "--file", str(csv))
    assert proc.returncode == 0
    assert [r["proxy"] for r in data] == [good]
    assert f"{csv}:3: type: 'ftp' is not a proxy type" in proc.stderr
    strict = run_cli("check", "--config", str(world.config_path), "--strict", "--file", str(csv))
    assert strict.returncode == 2 and "--strict" in strict.stderr


def test_every_probe_reports_its_wire_phases(world_report):
    """Per-phase timings, as blackbox_exporter reports them: a phase shows where the probe's
    requests went through it, and a reused connection (tcp_connect's spare too) has no connect phase."""
    _, by_name, _ = world_report
    phases = {p["name"]: set(p.get("phases", {})) for p in by_name["squid-elite"]["probes"]}
    assert phases["tcp_connect"] == {"connect"}
    assert phases["anonymity"] == {"ttfb", "transfer"}  # forwarded GET on tcp_connect's connection (the spare)
    assert phases["ssl"] == {"connect", "proxy_handshake", "tls", "ttfb", "transfer"}  # CONNECT, then TLS
    assert phases["long_get"] == {"ttfb", "transfer"}  # the judge's keep-alive connection, reused
    assert phases["ban"] == {"ttfb", "transfer"}  # the ssl probe's tunnel, reused
    socks = {p["name"]: p.get("phases", {}) for p in by_name["microsocks"]["probes"]}
    assert {"connect", "proxy_handshake", "ttfb", "transfer"} <= set(socks["anonymity"])
    silent = next(p for p in by_name["silent-socks5"]["probes"] if p["name"] == "anonymity")
    assert silent["phases"]["proxy_handshake"] >= 2000 - 50  # [timeouts].read = 2 s, all of it in the handshake
    slow = next(p for p in by_name["silent-http"]["probes"] if p["name"] == "anonymity")
    assert slow["phases"]["ttfb"] >= 2000 - 50 and "transfer" not in slow["phases"]


@pytest.mark.parametrize("name", ["microsocks", "microsocks-auth-right-password", "pproxy-socks4"])
def test_a_2kb_get_goes_through_socks(world_report, name):
    """Through SOCKS the long GET is origin-form inside the tunnel; the target still gets all of it."""
    _, by_name, _ = world_report
    (probe,) = [p for p in by_name[name]["probes"] if p["name"] == "long_get"]
    assert probe["ok"] and probe["detail"] == "a 2,048-byte GET came back 200"


def test_each_ban_target_has_its_verdict_and_usable_for_names_the_rest(world_report):
    """The Turnstile-like target challenges one exit; the others still serve it."""
    _, by_name, _ = world_report
    presets = ["recaptcha", "google_search", "hcaptcha", "turnstile", "funcaptcha"]
    row = by_name["squid-turnstile-banned"]
    assert (row["healthy"], row["code"], row["probe"]) == (False, 28, "ban")
    assert {name: v["banned"] for name, v in row["targets"].items()} == {p: p == "turnstile" for p in presets}
    assert "cf-mitigated: challenge" in row["targets"]["turnstile"]["detail"]
    assert row["usable_for"] == [p for p in presets if p != "turnstile"]
    assert "banned by turnstile" in row["detail"] and "still usable for recaptcha" in row["detail"]
    google = by_name["squid-banned-exit"]  # Google's /sorry/ on the reCAPTCHA anchor only
    assert [n for n, v in google["targets"].items() if v["banned"]] == ["recaptcha"]
    assert "/sorry/index" in google["targets"]["recaptcha"]["detail"]
    healthy = by_name["squid-anonymous"]
    assert healthy["usable_for"] == presets and not any(v["banned"] for v in healthy["targets"].values())
    refused = by_name["refused"]  # failed before the ban probe: usable for nothing, no verdicts
    assert (refused["targets"], refused["usable_for"]) == ({}, [])
    assert healthy["exit"]["state"] == "unconfirmed" and healthy["exit"]["ips"] == [world_report[0].by_name("squid-anonymous").egress]
