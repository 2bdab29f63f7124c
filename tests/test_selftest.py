"""The checker's self-test derives from the probe registry and asks each target what its probe asks.

Against the loopback world's judge. The URLs are recorded at the one wire call every fetch goes
through (``Session.get``), wrapped, not replaced: the real requests still go out.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from cli import run_cli, run_json

from proxycheck.config import load_settings
from proxycheck.probes import REGISTRY, declared_targets
from proxycheck.selftest import preflight
from proxycheck.transport import shared_ssl_context
from proxycheck.wire import session as wire_session


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    urls: list[str] = []
    original = wire_session.Session.get

    async def recording(self, url, **kw):
        if self.proxy is None:
            urls.append(url)
        return await original(self, url, **kw)

    monkeypatch.setattr(wire_session.Session, "get", recording)
    return urls


def _base(url: str) -> str:
    return url.split("?", 1)[0]


def _configured(settings, keys) -> set[str]:
    found = set()
    for key in keys:
        found.update(settings.targets.urls(key))
    return {_base(u) for u in found}


def test_the_self_test_fetches_exactly_the_declared_targets_and_the_ip_echo(world, fetched):
    settings = load_settings(world.config_path)
    status = asyncio.run(preflight(settings, shared_ssl_context(settings.targets.ca_file)))
    assert status.ok, status.reason
    assert {_base(u) for u in fetched} == _configured(settings, declared_targets()) | {settings.targets.ip_url}
    used = {key for key in declared_targets() if settings.targets.urls(key)}  # ban_url xor [[targets.ban]]
    assert {c.key.partition("[")[0] for c in status.checks} == used | {"ip_url"}


@pytest.mark.parametrize("spec", [s for s in REGISTRY if s.selftest], ids=lambda s: s.name)
def test_each_probes_self_test_asks_only_its_own_targets(world, fetched, spec):
    settings = load_settings(world.config_path)

    async def one():
        async with wire_session.Session(None, shared_ssl_context(settings.targets.ca_file),
                                        wire_session.Timeouts(1, 2), "t") as http:
            from proxycheck.probes.base import SelfTestContext

            return await spec.selftest(SelfTestContext(settings, http))

    checks = asyncio.run(one())
    assert all(c.ok for c in checks), checks
    assert {_base(u) for u in fetched} == _configured(settings, spec.target_keys)


def test_the_judge_is_asked_with_a_nonce_and_the_long_get_with_its_full_length(world, fetched):
    settings = load_settings(world.config_path)
    asyncio.run(preflight(settings, shared_ssl_context(settings.targets.ca_file)))
    (judge,) = [u for u in fetched if _base(u) == settings.targets.judge_url]
    assert re.search(r"[?&]proxycheck=[0-9a-f]{16}$", judge)
    (long_get,) = [u for u in fetched if _base(u) == settings.targets.long_get_url]
    assert len(f"GET {long_get} HTTP/1.1") >= settings.probes.long_get_bytes  # the absolute-form length


def _with_judge_path(world, tmp_path: Path, path: str) -> Path:
    config = Path(world.config_path).read_text().replace('/get"', f'{path}"', 1)
    out = tmp_path / "judge.toml"
    out.write_text(config)
    return out


def test_a_judge_that_does_not_echo_the_query_is_the_checkers_problem(world, tmp_path):
    """httpbin's /headers answers a judge's JSON but drops the query string: every proxy would get
    36 (no nonce). It is a checker problem: exit 3, no proxy judged, and doctor names it."""
    config = _with_judge_path(world, tmp_path, "/headers")
    settings = load_settings(config)
    status = asyncio.run(preflight(settings, shared_ssl_context(settings.targets.ca_file)))
    assert not status.ok and status.reason.startswith("judge_url: ") and "does not echo the query string" in status.reason
    proc, data = run_json("check", "--config", str(config), "--json", world.by_name("squid-elite").url)
    assert proc.returncode == 3
    assert data[0]["code"] is None and data[0]["reason"] == "checker_unavailable"
    assert "does not echo the query string" in data[0]["detail"]
    doctor = run_cli("doctor", "--config", str(config))
    (line,) = [ln for ln in doctor.stdout.splitlines() if ln.startswith(("OK judge_url", "FAIL judge_url"))]
    assert line.startswith("FAIL judge_url:") and "echoes the query string" in line, doctor.stdout


def test_self_test_wording_per_target(world):
    settings = load_settings(world.config_path)
    status = asyncio.run(preflight(settings, shared_ssl_context(settings.targets.ca_file)))
    found = {c.key: c.found for c in status.checks}
    assert "is a judge (it saw us as 127.0.0.1)" in found["judge_url"]
    assert "answered 200 to a 2,048-byte GET" in found["long_get_url"]
    assert "is an intact image/png" in found["image_urls[0]"]
    assert "over TLSv1" in found["ssl_url"]
