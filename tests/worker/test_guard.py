"""The account guard: a captcha service's error budget, shared by every worker process (guard.py)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import proxycheck
from proxycheck import GuardTripped, NoHealthyProxy
from proxycheck.guard import GuardState
from proxycheck.store._rows import utcnow
from proxycheck.worker import ProxyPool

from .helpers import fleet, in_processes, proxy

T0 = utcnow()
N = 6


def _config(tmp_path: Path, url: str, subnet_errors: int = 0, reported_percent: float = 10) -> Path:
    """The budgets' tests turn the subnet rule off: helpers.proxy puts every proxy in one /24."""
    path = tmp_path / "proxycheck.toml"
    path.write_text(f'database_url = "{url}"\n\n[worker]\nmax_reported_percent = {reported_percent}\n'
                    f'\n[guard]\nsubnet_errors = {subnet_errors}\n\n[guard.capmonster]\nmax_proxy_errors = {N}\nwindow = 600\n'
                    '\n[guard.my-service]\nmax_proxy_errors = 2\nwindow = 60\n')
    path.chmod(0o600)
    return path


def _reporter(config: str, reports: list[tuple[str, Any, str | None]], out: Any) -> None:
    """A worker process, configured from the environment as a real one is: ``(key, outcome, service)``."""
    os.environ["PROXYCHECK_CONFIG"] = config
    try:
        out.put([proxycheck.report(key, outcome, service=service).kind for key, outcome, service in reports])
    except Exception as exc:  # noqa: BLE001 - the test shows every failure
        out.put(repr(exc))


def _asker(config: str, out: Any) -> None:
    """A fresh worker process asking for a proxy for each service: the key, or the refusal."""
    os.environ["PROXYCHECK_CONFIG"] = config
    got: dict[str, Any] = {}
    for service in ("capmonster", "anti-captcha"):
        try:
            got[service] = proxycheck.get_healthy_proxy(service=service).key
        except GuardTripped as exc:
            got[service] = ("GuardTripped", str(exc), isinstance(exc, LookupError))
    try:
        with proxycheck.lease(service="capmonster"):
            got["lease"] = "leased"
    except GuardTripped:
        got["lease"] = "GuardTripped"
    out.put(got)


def _run(target: Any, *args: Any) -> list[Any]:
    results = in_processes([(target, a) for a in args])
    assert not [r for r in results if isinstance(r, str)], results
    return results


def test_worker_processes_trip_the_budget_at_exactly_n(migrated_url, writer, tmp_path):
    ps = fleet(writer, [proxy(n) for n in range(1, 31)])
    config = str(_config(tmp_path, migrated_url))
    banned = {"errorId": 1, "errorCode": "ERROR_PROXY_BANNED"}
    # N - 1 proxy errors from five processes at once, among reports that must not count: errors not
    # about the proxy, soft failures, proxy errors for another service or for none.
    batches = [
        [(ps[i].key, banned, "capmonster"), (ps[i].key, "ERROR_ZERO_BALANCE", "capmonster"),
         (ps[i].key, "ERROR_RECAPTCHA_TIMEOUT", "capmonster"), (ps[i].key, 28, "anti-captcha"), (ps[i].key, 25, None)]
        for i in range(N - 1)
    ]
    _run(_reporter, *[(config, b) for b in batches])
    (before,) = _run(_asker, (config,))
    assert isinstance(before["capmonster"], str) and before["lease"] == "leased", before
    # The N-th, from yet another process: every process now refuses capmonster, and only it.
    _run(_reporter, (config, [(ps[N].key, "ERROR_PROXY_CONNECT_REFUSED", "CapMonster ")]))
    after = _run(_asker, *[(config,)] * 3)
    for got in after:
        name, message, lookup = got["capmonster"]
        assert name == "GuardTripped" and lookup and got["lease"] == "GuardTripped"
        assert isinstance(got["anti-captcha"], str)
        assert f"guard capmonster tripped: {N} proxy errors in the last 10 min spent its budget of {N}" in message
        assert f"{N - 1} × ERROR_PROXY_BANNED, 1 × ERROR_PROXY_CONNECT_REFUSED" in message
        assert f"on proxies {ps[N].key} (1), " in message and message.count("http://user@203.0.113.") == 5
        assert " ...; subnets 203.0.113.0/24 (6); hand-out for capmonster resumes at 20" in message
        assert ":pw@" not in message and "pw" not in message.replace(ps[0].key, "")


def test_it_reopens_when_the_errors_leave_the_window(migrated_url, writer, tmp_path):
    ps = fleet(writer, [proxy(n) for n in range(1, 11)])
    config = _config(tmp_path, migrated_url)
    now = [T0]
    pool = ProxyPool(migrated_url, config=config, clock=lambda: now[0])
    try:
        for i, seconds in enumerate((0, 10, 20)):  # my-service: 2 per 60 s
            now[0] = T0 + timedelta(seconds=seconds)
            pool.report(ps[i], 26, service="my-service")
        # Three errors, budget two: it holds until the second newest (T0 + 10 s) leaves the window.
        resumes = T0 + timedelta(seconds=70)
        for at, tripped in ((20, True), (69.999, True), (70, False), (79, False), (80, False)):
            now[0] = T0 + timedelta(seconds=at)
            state = pool.guard_state("my-service")
            assert (state.tripped, state.errors) == (tripped, 3 if at < 60 else 2 if at < 70 else 1 if at < 80 else 0), at
            if tripped:
                assert state.resumes_at == resumes
                with pytest.raises(GuardTripped) as caught:
                    pool.get(service="my-service")
                assert caught.value.resumes_at == resumes and caught.value.service == "my-service"
            else:
                assert pool.get(service="my-service") in ps
    finally:
        pool.close()


def test_refusal_is_before_selection_and_other_hand_outs(migrated_url, writer, tmp_path):
    """get_healthy_proxies and a lease refuse too; a spent budget wins over "no healthy proxy"."""
    ps = fleet(writer, [proxy(n) for n in range(1, 4)])
    config = _config(tmp_path, migrated_url)
    pool = ProxyPool(migrated_url, config=config)
    try:
        pool.report(ps[0], 25, service="my-service")
        pool.report(ps[1], 130, service="my-service")
        with pytest.raises(GuardTripped, match="tripped: 2 proxy errors in the last 1 min"):
            pool.get_all(service="my-service")
        with pytest.raises(GuardTripped):
            pool.acquire(service="my-service")
        with pytest.raises(GuardTripped):
            pool.get(service="my-service", tags={"nowhere"})
        with pytest.raises(NoHealthyProxy):
            pool.get(service="capmonster", tags={"nowhere"})
        state = pool.guard_state("my-service")
        assert isinstance(state, GuardState) and state.tripped and state.as_dict()["by_error"] == {
            "ERROR_PROXY_CONNECT_REFUSED": 1, "ERROR_BAD_PROXY": 1}
    finally:
        pool.close()


@pytest.mark.parametrize("service", ["", " ", "Cap Monster", "x" * 65, 7, "né"])
def test_bad_service_names_are_a_value_error_naming_service(migrated_url, service):
    pool = ProxyPool(migrated_url)
    try:
        with pytest.raises(ValueError, match=r"^service: "):
            pool.get(service=service)
        with pytest.raises(ValueError, match=r"^service: "):
            pool.report("http://203.0.113.2:8001", 25, service=service)
    finally:
        pool.close()


def test_errors_concentrated_on_one_subnet_hold_it_back_before_the_budget_trips(migrated_url, writer, tmp_path):
    """store/guard.py rule 4: three proxy errors from two or more proxies of one /24 hold all of
    its proxies back (capmonster's budget of 5 still open); errors on one proxy alone, or spread
    over subnets, do not; a passing check through any of them lets them all back."""
    from proxycheck.proxy import Proxy
    from proxycheck.store.guard import held_subnets

    from .helpers import check
    from .test_status_reports import cli

    a = [Proxy("http", f"192.0.2.{n}", 8100 + n, "user", "pw") for n in range(1, 5)]
    b = [Proxy("http", f"198.51.100.{n}", 8200 + n, "user", "pw") for n in range(1, 4)]
    c = [Proxy("http", "2001:db8:1:2::5", 8300, None, None), Proxy("http", "2001:db8:1:ffff::9", 8301, None, None)]
    fleet(writer, a + b + c)
    pool = ProxyPool(migrated_url, config=_config(tmp_path, migrated_url, subnet_errors=3, reported_percent=60))
    try:
        def handed() -> set[Proxy]:
            return set(pool.get_all(service="capmonster"))

        pool.report(a[0], 28, service="capmonster")
        pool.report(a[1], "ERROR_PROXY_BANNED", service="anti-captcha")  # any service: the subnet is one
        for _ in range(3):
            pool.report(b[1], 25)  # one proxy alone: its own business (take-out), not its subnet's
        pool.report(c[0], 130, service="2captcha")
        assert held_subnets(writer) == [] and {a[2], a[3], b[0], b[2], c[1]} <= handed()  # the others: taken out
        pool.report(a[2], {"errorId": 1, "errorCode": "ERROR_PROXY_CONNECT_REFUSED"}, service="capmonster")
        (held,) = held_subnets(writer)
        assert held[:2] == ("192.0.2.0/24", 4)
        assert "held back with its subnet 192.0.2.0/24: workers reported 3 proxy errors on 3 of its proxies" in held[2]
        assert not handed() & set(a) and {b[0], b[2], c[1]} <= handed()
        shown = cli(migrated_url, "status")
        assert "HELD BACK: 4 proxies of 192.0.2.0/24: held back with its subnet 192.0.2.0/24: workers reported 3" in shown.stdout
        as_json = json.loads(cli(migrated_url, "status", "--json").stdout)["summary"]
        assert [(h["subnet"], h["proxies"]) for h in as_json["held_subnets"]] == [("192.0.2.0/24", 4)]
        assert "pw" not in shown.stdout
        assert not pool.guard_state("capmonster").tripped and pool.guard_state("capmonster").errors == 2
        pool.report(c[1], 27)  # a second proxy of the /48: two errors, not yet
        assert [h[0] for h in held_subnets(writer)] == ["192.0.2.0/24"]
        pool.report(c[1], 27)  # the third: 2001:db8:1::/48 goes too
        assert [h[:2] for h in held_subnets(writer)] == [("192.0.2.0/24", 4), ("2001:db8:1::/48", 2)]
        assert not handed() & set(a + c)
        with pytest.raises(NoHealthyProxy, match="; 9 enabled proxies, 2 healthy, 2 healthy but held back with their subnet"):
            pool.get(exclude=b)  # a[3] and c[1] healthy but held back; the others reported were taken out
        check(writer, {a[3]: True})  # a check through one of them passes: the whole /24 is back
        assert [h[:2] for h in held_subnets(writer)] == [("2001:db8:1::/48", 2)]
        assert a[3] in handed() and not handed() & set(c)
        check(writer, {c[1]: False})  # a failing check lets nothing back
        assert [h[:2] for h in held_subnets(writer)] == [("2001:db8:1::/48", 2)]
    finally:
        pool.close()


def test_retention_keeps_every_report_an_error_budget_counts(migrated_url, writer, tmp_path):
    """The daemon's retention never prunes reports inside the longest budget window, even with
    ``keep_failure_days = 0`` and a guard rail window shorter than the budgets'."""
    import asyncio

    from proxycheck.config import settings_from_dict
    from proxycheck.daemon import jobs
    from proxycheck.daemon.storage import Storage
    from proxycheck.store.reports import recent_reports

    ps = fleet(writer, [proxy(n) for n in range(1, 4)])
    now = [utcnow() - timedelta(seconds=700)]
    pool = ProxyPool(migrated_url, config=_config(tmp_path, migrated_url), clock=lambda: now[0])
    try:
        pool.report(ps[0], 28, service="capmonster")  # outside every window: pruned
        now[0] += timedelta(seconds=200)
        pool.report(ps[1], 28, service="capmonster")  # 500 s old: older than [worker].report_window (300 s)
    finally:
        pool.close()
    settings = settings_from_dict({"daemon": {"keep_failure_days": 0}, "guard": {"capmonster": {"window": 600}}}, "t")
    asyncio.run(jobs.retention(Storage(writer, writer), settings))
    assert [r.proxy_key for r in recent_reports(writer)] == [ps[1].key]
