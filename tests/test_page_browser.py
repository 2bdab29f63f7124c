"""The status page in a real browser (Debian's headless chromium, driven by Selenium through
Debian's chromedriver) against a real ``proxycheck run`` with real loopback proxies: healthy
squids, a refused port (25), a microsocks refusing a wrong password (49), a squid with a right one.

It logs in with the token (and is refused without it), compares the page's counts with
``status --json``, opens a failing proxy's page and finds its failing probe's sentence, finds no
proxy password in any page or network response, sees no console error, and saves a screenshot
of each page (under $PROXYCHECK_SCREENSHOTS, else the test's tmp_path; the path is printed).

Without chromium + chromium-driver it skips loudly; PROXYCHECK_REQUIRE_BROWSER=1 (CI) makes that
a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from daemons import label_of, running_api, secrets_of, status_json, wait_until

pytestmark = pytest.mark.browser

DISTINCTIVE = "Pw-7f9c2e-nowhere-else"  # a hit anywhere on the page is a leak, not chance
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
NAMES = ["squid-anonymous", "squid-elite", "refused", "microsocks-auth-wrong-password", "squid-auth-right-password"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1400"]


def by_name(status: dict) -> dict[str, dict]:
    """status --json rows by fixture name (the extra proxy by its label, "with-password")."""
    names = {label_of(n): n for n in NAMES}
    return {names.get(r["label"], r["label"]): r for r in status["proxies"]}


def _browser_missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package")
    return ", ".join(missing) or None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = _browser_missing()
    if missing:
        if os.environ.get("PROXYCHECK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PROXYCHECK_REQUIRE_BROWSER=1 but {missing} is missing (apt-get install chromium chromium-driver)",
                        pytrace=False)
        pytest.skip(f"!!! BROWSER TESTS NOT RUN: missing {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def daemon(world, tmp_path_factory):
    """The daemon, plus one proxy with a password found nowhere else (the refused port, with
    credentials), added to its CSV and picked up on SIGHUP."""
    tmp_path = tmp_path_factory.mktemp("page")
    with running_api(world, tmp_path, NAMES) as running:
        token = running.token_file.read_text().strip()
        refused = world.by_name("refused").url.removeprefix("http://")
        with (tmp_path / "proxies.csv").open("a") as csv:
            csv.write(f"http://pageuser:{DISTINCTIVE}@{refused},with-password\n")
        running.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: by_name(status_json(running.config)).get("with-password", {}).get("last_checked_at"), 30,
                   "the proxy with the distinctive password checked")
        yield running, token
    code, err = running.code, running.err
    assert code == 0, err


@pytest.fixture
def shots(tmp_path) -> Path:
    where = Path(os.environ.get("PROXYCHECK_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nstatus page screenshots: {where}")
    return where


def _responses(driver) -> list[tuple[str, str]]:
    """(URL, body) of every response the browser received since the last call (DevTools log)."""
    seen = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.responseReceived":
            continue
        params = message["params"]
        try:
            body = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": params["requestId"]})
        except Exception:  # noqa: BLE001 - a redirect has no body to fetch
            continue
        seen.append((params["response"]["url"], body.get("body", "")))
    return seen


def _login(driver, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/ui/")
    assert driver.current_url.endswith("/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_until(lambda: driver.current_url.endswith("/ui/"), 10, "the fleet page after logging in")


def test_status_page_in_a_browser(browser, daemon, world, shots):
    from selenium.webdriver.common.by import By

    running, token = daemon
    base = running.base
    driver = browser
    secrets = secrets_of(world, NAMES) | {DISTINCTIVE}
    assert len(secrets) >= 3 and all(len(s) >= 6 for s in secrets)
    fetched: set[str] = set()

    def page_done(name: str) -> None:
        """Screenshot; no password in this page or any response it took; no console error."""
        driver.save_screenshot(str(shots / f"{name}.png"))
        for url, body in _responses(driver):  # bodies are fetched before the next navigation drops them
            fetched.add(url.rsplit("/", 1)[-1])
            for secret in secrets:
                assert secret not in body, f"a proxy password in the response of {url}"
        for secret in secrets:
            assert secret not in driver.page_source
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

    # Refused without the token: the login form again, and no session cookie.
    driver.get(base + "/ui/proxies")
    assert driver.current_url.endswith("/ui/login")
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait_until(lambda: driver.find_elements(By.ID, "login-failed"), 10, "the refusal")
    assert not driver.get_cookies()
    driver.get_log("browser")  # the refused login's 401 is the test's doing, not the page's
    page_done("login-refused")

    _login(driver, base, token)
    cookie = {c["name"]: c for c in driver.get_cookies()}["proxycheck_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # The page's cookie opens no API route: those keep the bearer token.
    api = httpx.get(base + "/status", cookies={cookie["name"]: cookie["value"]}, trust_env=False, timeout=10)
    assert api.status_code == 401

    # The fleet now: the page's counts are status --json's (retried: the daemon keeps checking).
    def counts_match():
        driver.get(base + "/ui/")
        shown = {s: int(driver.find_element(By.ID, f"count-{s}").text) for s in ("healthy", "unhealthy", "unknown", "disabled")}
        return shown if shown == status_json(running.config)["summary"]["counts"] else None

    shown = wait_until(counts_match, 30, "the page's counts to equal status --json")
    assert sum(shown.values()) == len(NAMES) + 1 and shown["healthy"] >= 1 and shown["unhealthy"] >= 3, shown
    wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".chart .uplot")) == 4, 15, "the four over-time charts")
    page_done("fleet")

    # The table, filtered to the unhealthy ones.
    driver.find_element(By.LINK_TEXT, "Proxies").click()
    wait_until(lambda: driver.find_elements(By.ID, "proxies"), 10, "the proxy table")
    assert f"{sum(shown.values())} proxies" in driver.find_element(By.ID, "table-total").text
    page_done("table")
    driver.get(base + "/ui/proxies?state=unhealthy&sort=code")
    rows = driver.find_elements(By.CSS_SELECTOR, "#proxies tbody tr")
    assert len(rows) == shown["unhealthy"]

    # One failing proxy's page: its failing probe's sentence, as status --json words it.
    refused = by_name(status_json(running.config))["refused"]
    assert refused["code"] == 25 and refused["detail"]
    driver.find_element(By.LINK_TEXT, refused["proxy"]).click()
    wait_until(lambda: driver.find_elements(By.ID, "checks"), 10, "the proxy page")
    assert refused["detail"] in driver.find_element(By.ID, "detail").text
    assert refused["detail"] in driver.find_element(By.ID, "checks").text  # in its timeline too
    assert "25 ERROR_PROXY_CONNECT_REFUSED" in driver.find_element(By.ID, "explain").text
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#phases .uplot"), 10, "the latency chart")
    # Its time axis spans the checks, widened to at least 10 minutes (not 2027 to 2029 for one check).
    chart = driver.find_element(By.ID, "phases")
    wait_until(lambda: chart.get_attribute("data-x-max"), 10, "the chart's time window")
    x_min, x_max = (float(chart.get_attribute(a)) for a in ("data-x-min", "data-x-max"))
    times = json.loads(driver.find_element(By.ID, "phase-data").get_attribute("textContent"))["t"]
    assert x_min <= min(times) and max(times) <= x_max
    assert x_max - x_min == max(600, max(times) - min(times)), (x_min, x_max, times)
    one = driver.execute_script("return proxycheckCharts.timeWindow(1800000000, 1800000000)")  # a single check
    assert one == [1800000000 - 300, 1800000000 + 300]
    assert driver.execute_script("return proxycheckCharts.timeWindow(1800000000, 1800003600)") == [1800000000, 1800003600]
    page_done("proxy-refused")

    # The one with a password: its page names it without the password.
    driver.get(base + "/ui/proxies")
    authed = by_name(status_json(running.config))["with-password"]
    assert ":***@" in authed["proxy"]
    driver.find_element(By.LINK_TEXT, authed["proxy"].replace(":***@", "@")).click()
    wait_until(lambda: driver.find_elements(By.ID, "checks"), 10, "the password proxy's page")
    page_done("proxy-with-password")
    # The responses checked include the pages, the vendored chart library and the chart data.
    assert fetched >= {"uPlot.iife.min.js", "charts.js", "24h", "7d", "login", ""}

    # Log out (a POST carrying the CSRF token): the session is gone.
    driver.find_element(By.CSS_SELECTOR, ".logout button").click()
    wait_until(lambda: driver.current_url.endswith("/ui/login"), 10, "the login form after logging out")
    driver.get(base + "/ui/")
    assert driver.current_url.endswith("/ui/login")
