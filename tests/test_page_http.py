"""The status page's lock over plain HTTP against a real ``proxycheck run`` (the browser test,
test_page_browser.py, drives chromium through the same): login with the token only, Origin on
every POST, the CSRF token on logout, the session cookie's flags, the CSP, static files open but
holding no fleet data, and the API untouched (bearer only, JSON-only)."""

from __future__ import annotations

import re

import httpx
import pytest

from daemons import running_api, secrets_of

NAMES = ["squid-anonymous", "refused", "squid-auth-right-password"]


@pytest.fixture(scope="module")
def page(world, tmp_path_factory):
    with running_api(world, tmp_path_factory.mktemp("page-http"), NAMES) as running:
        token = running.token_file.read_text().strip()
        yield running, token, secrets_of(world, NAMES)
    code, err = running.code, running.err
    assert code == 0, err


def client(running) -> httpx.Client:
    return httpx.Client(base_url=running.base, trust_env=False, timeout=10, follow_redirects=False)


def login(c: httpx.Client, running, token: str, origin: str | None = "same") -> httpx.Response:
    headers = {} if origin is None else {"Origin": running.base if origin == "same" else origin}
    return c.post("/ui/login", data={"token": token}, headers=headers)


def test_pages_need_a_session_and_the_login_needs_the_token(page):
    running, token, _ = page
    with client(running) as c:
        for path in ("/", "/ui", "/ui/", "/ui/proxies", "/ui/proxies/1", "/ui/data/over-time/24h"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["Location"].startswith("/ui"), path
        assert c.get("/ui/", follow_redirects=True).url.path == "/ui/login"
        assert login(c, running, "wrong").status_code == 401
        assert login(c, running, "").status_code == 401
        assert "proxycheck_session" not in c.cookies
        assert c.get("/ui/").status_code == 303
        # The bearer token is not a session either: the page is for browsers.
        assert c.get("/ui/", headers={"Authorization": f"Bearer {token}"}).status_code == 303


def test_login_sets_a_strict_httponly_cookie_and_the_csp(page):
    running, token, _ = page
    with client(running) as c:
        r = login(c, running, token)
        assert r.status_code == 303 and r.headers["Location"] == "/ui/"
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie and "Max-Age=" in cookie
        assert len(c.cookies["proxycheck_session"]) >= 40  # 256 random bits
        fleet = c.get("/ui/")
        assert fleet.status_code == 200 and fleet.headers["Content-Type"].startswith("text/html")
        csp = fleet.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert fleet.headers["Cache-Control"] == "no-store" and fleet.headers["X-Content-Type-Options"] == "nosniff"
        assert not re.search(r"<script(?![^>]*(src=|application/json))", fleet.text)  # no inline script
        assert c.get("/ui/data/over-time/24h").json()["step"] == 900
        assert c.get("/ui/data/over-time/1y").status_code == 404
        # The page's cookie opens no API route, and the API's rules stand.
        assert c.get("/status").status_code == 401
        assert c.post("/report", data={"proxy": "x"}, headers={"Authorization": f"Bearer {token}"}).status_code == 415


@pytest.mark.parametrize("origin", [None, "null", "http://evil.example", "http://127.0.0.1:1"])
def test_posts_from_elsewhere_are_refused(page, origin):
    running, token, _ = page
    with client(running) as c:
        assert login(c, running, token, origin=origin).status_code == 403
        assert "proxycheck_session" not in c.cookies
        login(c, running, token)
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/").text).group(1)
        headers = {} if origin is None else {"Origin": origin}
        assert c.post("/ui/logout", data={"csrf": csrf}, headers=headers).status_code == 403
        assert c.get("/ui/").status_code == 200  # still logged in


def test_logout_needs_the_csrf_token_and_ends_the_session(page):
    running, token, _ = page
    with client(running) as c:
        login(c, running, token)
        session = c.cookies["proxycheck_session"]
        same = {"Origin": running.base}
        assert c.post("/ui/logout", data={"csrf": "guess"}, headers=same).status_code == 403
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/").text).group(1)
        assert c.post("/ui/logout", data={"csrf": csrf}, headers=same).status_code == 303
    with client(running) as c:  # the old cookie, replayed
        assert c.get("/ui/", headers={"Cookie": f"proxycheck_session={session}"}).status_code == 303


def test_static_assets_are_open_and_ship_the_licence(page):
    running, _, _ = page
    with client(running) as c:
        js = c.get("/ui/static/uPlot.iife.min.js")
        assert js.status_code == 200 and "uPlot" in js.text[:200]
        assert "MIT" in c.get("/ui/static/uPlot.LICENSE").text
        for escape in ("/ui/static/%2e%2e/templates/base.html", "/ui/static/..%2ftemplates%2fbase.html"):
            r = c.get(escape)
            assert r.status_code != 200 and "{% block" not in r.text, escape


def test_no_password_in_any_page_and_a_failing_proxy_says_why(page):
    running, token, secrets = page
    with client(running) as c:
        login(c, running, token)
        table = c.get("/ui/proxies")
        ids = re.findall(r'href="/ui/proxies/(\d+)"', table.text)
        assert len(ids) == len(NAMES)
        bodies = [c.get("/ui/").text, table.text, c.get("/ui/data/over-time/7d").text]
        bodies += [c.get(f"/ui/proxies/{i}").text for i in ids]
        for body in bodies:
            for secret in secrets:
                assert secret not in body
        refused = next(b for b in bodies if "ERROR_PROXY_CONNECT_REFUSED (connect_refused)" in b)
        assert "refused the TCP connection" in refused
        assert c.get("/ui/proxies/999999").status_code == 404
        assert "&lt;script&gt;" in c.get("/ui/proxies", params={"tag": "<script>"}).text  # escaped back
        for odd in ({"sort": "password"}, {"state": "x' OR 1=1"}, {"desc": "yes"}):  # not a column, not a state: ignored
            assert c.get("/ui/proxies", params=odd).status_code == 200, odd
        for odd in ({"code": "9" * 40}, {"page": "9" * 40}, {"page": "0"}):  # a number we cannot take: said so
            answer = c.get("/ui/proxies", params=odd)
            assert answer.status_code == 400 and "a whole number from" in answer.text, odd


def test_a_worker_report_shows_on_the_fleet_and_on_its_proxy(page, world):
    running, token, secrets = page
    target = world.by_name("squid-auth-right-password").url  # with its password, as a worker has it
    api = httpx.post(running.base + "/report", json={"proxy": target, "outcome": {"errorId": 29, "errorCode": "ERROR_PROXY_TRANSPARENT"}},
                     headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=10)
    assert api.status_code == 200, api.text
    with client(running) as c:
        login(c, running, token)
        fleet = c.get("/ui/").text
        assert "ERROR_PROXY_TRANSPARENT" in fleet and "proxy_error" in fleet
        table = c.get("/ui/proxies").text
        ids = re.findall(r'href="/ui/proxies/(\d+)"', table)
        pages = [c.get(f"/ui/proxies/{i}").text for i in ids]
        (reported,) = [p for p in pages if "ERROR_PROXY_TRANSPARENT</td>" in p]
        assert 'id="reports"' in reported
        for body in [fleet, table, *pages]:
            for secret in secrets:
                assert secret not in body


def test_a_worker_lease_shows_on_the_fleet_and_on_its_proxy(page):
    running, token, secrets = page
    bearer = {"Authorization": f"Bearer {token}"}
    held = httpx.post(running.base + "/lease", json={"ttl": 120, "worker": "page-test-worker"}, headers=bearer,
                      trust_env=False, timeout=10)
    assert held.status_code == 200, held.text
    body = held.json()
    try:
        with client(running) as c:
            login(c, running, token)
            assert re.search(r'id="worker-leases">\s*1 held', c.get("/ui/").text)
            table = c.get("/ui/proxies").text
            link = re.search(r'href="/ui/proxies/(\d+)">' + re.escape(body["proxy"]["proxy"].replace(":***@", "@")), table)
            page_text = c.get(f"/ui/proxies/{link.group(1)}").text
            leases = page_text.split('id="leases"')[1].split("</table>")[0]
            assert "page-test-worker" in leases and "held, expires" in leases
            for secret in secrets:
                assert secret not in page_text
    finally:
        httpx.post(running.base + f"/lease/{body['lease']}/release", json={}, headers=bearer, trust_env=False, timeout=10)
