"""A probe is one file plus one registry line: a throw-away probe with its own target, registered at
run time, is picked up by everything that derives from the registry, with no other edit.

The probe below (``cookies``, target ``[targets].cookie_url``, served offline by its own judge
endpoint) is what a new ``proxycheck/probes/cookies.py`` would hold; ``registered`` is its one
line in ``REGISTRY``. Then, untouched: the config loads and checks the key (``config check``
too), the reference documents it, ``judge_targets`` points it at a judge, the offline judge
serves its route, and the checker's self-test asks it. docs/development.md lists the steps;
the last test keeps that list to the files this test needed.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from proxycheck import probes
from proxycheck.cli import cli
from proxycheck.config import describe, judge_targets, judge_targets_toml, load_settings, reference_markdown, settings_from_dict
from proxycheck.errors import ConfigError
from proxycheck.judge import Judge, JudgeOptions
from proxycheck.judge_routes import Answer
from proxycheck.probes.base import ProbeSpec, SelfTestContext, TargetCheck, ok
from proxycheck.probes.selftest_fetch import fetch
from proxycheck.selftest import run_selftest
from proxycheck.target_spec import TargetSpec
from proxycheck.transport import shared_ssl_context

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
COOKIE = "proxycheck-probe=1"


# -- what proxycheck/probes/cookies.py would hold --------------------------------------------------
def _cookie_page(req, options) -> Answer:
    """The offline judge's answer on /cookies: a page that sets a cookie."""
    return Answer(200, b"ok\n", "text/plain", headers=(("Set-Cookie", COOKIE),))


async def _run(ctx):
    return ok("cookies kept")


async def _selftest(st: SelfTestContext) -> list[TargetCheck]:
    url = st.settings.targets.cookie_url
    response = await fetch(st, "cookie_url", url, "point [targets].cookie_url at a page that sets a cookie")
    if isinstance(response, TargetCheck):
        return [response]
    if COOKIE not in response.headers.get("set-cookie", ""):
        return [TargetCheck("cookie_url", url, False, f"{url} sets no cookie", "point it at a page that does")]
    return [TargetCheck("cookie_url", url, True, f"{url} sets a cookie")]


SPEC = ProbeSpec("cookies", _run, targets=(
    TargetSpec("cookie_url", "http://cookies.example/set", "page that sets a cookie (the cookies probe)", ("http",),
               offline=("{http}/cookies",), serve=(("/cookies", _cookie_page),)),
), selftest=_selftest)


@pytest.fixture
def registered(monkeypatch):
    """The registry line."""
    monkeypatch.setattr(probes, "REGISTRY", (*probes.REGISTRY, SPEC))


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("judge")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(str(d / "judge.pem"))
    return d


def _judge(tls: Path) -> Judge:
    return Judge(JudgeOptions(listen=(HOST, 0), tls_listen=(HOST, 0), cert_file=str(tls / "judge.pem"),
                              key_file=str(tls / "judge.pem")))


# -- the config --------------------------------------------------------------------------------
def test_the_config_loads_checks_and_defaults_the_new_key(registered):
    assert settings_from_dict({}, "f.toml").targets.cookie_url == "http://cookies.example/set"
    assert settings_from_dict({"targets": {"cookie_url": "http://a/c"}}, "f.toml").targets.cookie_url == "http://a/c"
    with pytest.raises(ConfigError, match=r"^f.toml: \[targets\].cookie_url: .*'https://a/c' is not a http:// URL"):
        settings_from_dict({"targets": {"cookie_url": "https://a/c"}}, "f.toml")


def test_without_the_registry_line_the_key_is_unknown():
    with pytest.raises(ConfigError, match=r"\[targets\]: unknown key 'cookie_url'"):
        settings_from_dict({"targets": {"cookie_url": "http://a/c"}}, "f.toml")


def test_config_check_accepts_the_key_and_names_it_when_bad(registered, tmp_path):
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('[targets]\ncookie_url = "http://a/c"\n')
    bad.write_text('[targets]\ncookie_url = 5\n')
    result = CliRunner().invoke(cli, ["config", "check", str(good)])
    assert result.exit_code == 0 and "OK" in result.output, result.output
    result = CliRunner().invoke(cli, ["config", "check", str(bad)])
    assert result.exit_code != 0 and f"{bad}: [targets].cookie_url: expected a string, got 5" in result.output, result.output


def test_the_reference_documents_the_key(registered):
    assert ("targets", "cookie_url", "http://cookies.example/set", "page that sets a cookie (the cookies probe)") in describe()
    assert "| `[targets].cookie_url` | `\"http://cookies.example/set\"` | http:// URL | page that sets a cookie" in reference_markdown()
    assert "[probes.cookies].every" in reference_markdown()


# -- the offline judge and the self-test ---------------------------------------------------------
def test_judge_targets_point_the_key_at_the_judge(registered):
    assert judge_targets("http://j:1", "https://j:2")["cookie_url"] == "http://j:1/cookies"


def test_the_offline_judge_serves_the_route_and_the_self_test_asks_it(registered, tls, tmp_path):
    with _judge(tls) as judge:
        config = tmp_path / "proxycheck.toml"
        config.write_text(judge_targets_toml(judge.http_url, judge.https_url, tls / "ca.pem"))
        settings = load_settings(str(config), environ={})
        checks = asyncio.run(run_selftest(settings, shared_ssl_context(settings.targets.ca_file)))
        http = judge.http_url
    by_key = {c.key: c for c in checks}
    assert by_key["cookie_url"].ok and by_key["cookie_url"].url == f"{http}/cookies", by_key["cookie_url"]
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]  # the built-in targets too


def test_a_judge_without_the_registry_line_does_not_serve_the_route(tls):
    import httpx

    with _judge(tls) as judge:
        assert httpx.get(f"{judge.http_url}/cookies").status_code == 404


# -- the documented steps ------------------------------------------------------------------------
def test_the_documented_steps_are_the_files_this_test_needed():
    """docs/development.md's "Adding a failure mode" steps name, each first in backticks, the files a new
    probe touches: its file, the registry, (for a new reason) ``verdict.py``, and its tests.
    This test stood in for the first two; nothing else was edited."""
    text = (ROOT / "docs" / "development.md").read_text().partition("## Adding a failure mode\n")[2].partition("\n## ")[0]
    steps = re.findall(r"^\d+\. `([^`]+)`", text, re.M)
    assert steps == ["proxycheck/probes/<name>.py", "proxycheck/probes/__init__.py", "proxycheck/verdict.py", "tests/"], steps
    doc = probes.__doc__ or ""
    assert "docs/development.md" in doc and "config.Targets" not in doc


def test_a_probe_cannot_take_over_a_route_the_judge_serves(monkeypatch):
    from proxycheck.judge import probe_routes

    clash = ProbeSpec("clash", _run, targets=(TargetSpec("clash_url", "http://a/get", "clash", offline=("{http}/get",),
                                                         serve=(("/get", _cookie_page),)),), selftest=_selftest)
    monkeypatch.setattr(probes, "REGISTRY", (*probes.REGISTRY, clash))
    with pytest.raises(ValueError, match=r"probe clash: \[targets\].clash_url serves /get, which the judge already serves"):
        probe_routes()
