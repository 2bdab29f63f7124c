"""No 5xx from anything a client types, against a real ``proxycheck run`` (http_api/params.py):
the inputs issue 17 found (``²``, ``①``, ``١``, a 26-digit id) get 400 or 404 in our words, and a
hypothesis test drives every query parameter (and path parameter) of every route with arbitrary
text. ``ROUTES`` is checked against the app's own router, so a new route or parameter cannot
be left out of the fuzz."""

from __future__ import annotations

import re
from contextlib import ExitStack
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxycheck.config import Settings
from proxycheck.http_api.app import HttpApi
from proxycheck.http_api.guard import is_page
from proxycheck.http_api.page import queries
from proxycheck.worker.params import QUERY_KEYS
from daemons import running_api

NAMES = ["squid-anonymous", "refused", "squid-auth-right-password"]

# Every route and the query parameters its code reads ("{x}": a path parameter, fuzzed too).
ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/healthz"): (),
    ("GET", "/status"): ("limit", "after"),
    ("GET", "/metrics"): (),
    ("GET", "/proxies/healthy"): (*QUERY_KEYS, "limit", "format"),
    ("GET", "/proxy"): (*QUERY_KEYS, "format"),
    ("POST", "/report"): (),
    ("POST", "/lease"): (),
    ("POST", "/lease/{id}/release"): (),
    ("GET", "/"): (),
    ("GET", "/ui"): (),
    ("GET", "/ui/login"): (),
    ("POST", "/ui/login"): (),
    ("POST", "/ui/logout"): (),
    ("GET", "/ui/"): (),
    ("GET", "/ui/data/over-time/{window}"): (),
    ("GET", "/ui/proxies"): (*queries.FILTERS, "sort", "desc", "page"),
    ("GET", "/ui/proxies/{id}"): (),
}


def test_the_fuzzed_routes_are_every_route(tmp_path):
    """The table above is the app's router: a route added without a row fails here."""
    settings = Settings(state_dir=str(tmp_path))
    api = HttpApi(settings, engine=_Engine(), pool=None, metrics=None, checker_state=lambda: ("ok", ""))
    routed = set()
    for route in api.app().router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method in ("GET", "POST") and not path.startswith("/ui/static"):
            routed.add((route.method, re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)))
    assert routed == set(ROUTES)
    api.reads.close()


class _Engine:
    url = type("U", (), {"render_as_string": lambda self, hide_password: "sqlite:////nonexistent"})()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def endpoint(request, world, tmp_path_factory):
    """One daemon per database: PostgreSQL refuses what SQLite takes (NUL in text, a bigint overflow)."""
    with ExitStack() as stack:
        url = ""
        if request.param == "postgresql":
            from pgdb import throwaway_database

            url = stack.enter_context(throwaway_database("http_input"))
        yield from _endpoint(world, tmp_path_factory, url)


def _endpoint(world, tmp_path_factory, database_url: str):
    with running_api(world, tmp_path_factory.mktemp("http-input"), NAMES, database_url=database_url) as running:
        token = running.token_file.read_text().strip()
        with (httpx.Client(base_url=running.base, trust_env=False, timeout=20,
                           headers={"Authorization": f"Bearer {token}"}) as api,
              httpx.Client(base_url=running.base, trust_env=False, timeout=20, follow_redirects=False) as page):
            assert page.post("/ui/login", data={"token": token}, headers={"Origin": running.base}).status_code == 303
            yield running, api, page
    code, err = running.code, running.err
    assert code == 0, err
    assert "Traceback" not in err, err[-3000:]


# (route with its input, status, our words in the answer): issue 17's finds first.
NAMED = [
    ("/ui/proxies?code=²", 400, "code: a whole number from 0 to 999 in ASCII digits"),
    ("/ui/proxies?page=①", 400, "page: a whole number from 1 to 1000000000 in ASCII digits"),
    ("/ui/proxies/99999999999999999999999999", 404, "no such proxy"),
    ("/ui/proxies/١", 404, "no such proxy"),
    ("/status?limit=١", 400, "limit: a whole number from 1 to 5000 in ASCII digits"),
    ("/status?limit=0", 400, "limit: a whole number from 1 to 5000"),
    ("/proxies/healthy?limit=²", 400, "limit: a whole number from 1 to 5000"),
    ("/status?after=a%00b", 400, "control character"),
    ("/proxy?tags=us%01", 400, "control character"),
    ("/ui/proxies?tag=%00", 400, "control character"),
    ("/lease/%00/release", 400, "control character"),
]


@pytest.mark.parametrize(("path", "status", "words"), NAMED)
def test_bad_input_is_ours_to_name(endpoint, path, status, words):
    _, api, page = endpoint
    client = page if path.startswith("/ui") else api
    answer = client.post(path, json={}) if path.endswith("/release") else client.get(path)
    assert answer.status_code == status, answer.text[:300]
    assert words in answer.text
    if path.startswith("/ui"):  # the page's own headers ride on its errors too
        assert "Content-Security-Policy" in answer.headers


def test_good_numbers_still_work(endpoint):
    _, api, page = endpoint
    assert api.get("/status?limit=2").status_code == 200
    assert page.get("/ui/proxies?code=25&page=1").status_code == 200
    assert page.get("/ui/proxies?code=").status_code == 200


def _request(client: httpx.Client, method: str, path: str, query: list[tuple[str, str]]) -> httpx.Response:
    url = path + ("?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query) if query else "")
    if method == "POST":
        return client.post(url, content=b"{}", headers={"Content-Type": "application/json"})
    return client.get(url)


TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "0", "-1", "²", "①", "١", "99999999999999999999999999", "1e3", " 7", "%", "\x00", "24h", "1"])
FUZZ = settings(deadline=None, max_examples=400, suppress_health_check=list(HealthCheck))


@FUZZ
@given(route=st.sampled_from(sorted(ROUTES)), data=st.data())
def test_no_5xx_from_any_query_or_path(endpoint, route, data):
    """Every query parameter the route reads (plus an unknown one), each path parameter, with
    arbitrary text: never 5xx (the app's 503 for a busy /status, "try again", is allowed)."""
    _, api, page = endpoint
    method, path = route
    names = ROUTES[route] + ("zz",)
    query = data.draw(st.lists(st.tuples(st.sampled_from(names), TEXT), max_size=4))
    for name in re.findall(r"\{(\w+)\}", path):
        path = path.replace(f"{{{name}}}", quote(data.draw(TEXT.filter(bool)), safe=""))
    client = page if is_page(path) else api
    answer = _request(client, method, path, query)
    if answer.status_code == 503:
        assert answer.json()["error"] == "busy", answer.text[:300]
        return
    assert answer.status_code < 500, (method, path, query, answer.status_code, answer.text[:300])

