"""The status page's session store and Origin rule (proxycheck/http_api/page/session.py), on
literal values: expiry, the bound on live sessions, the token compare, same-origin."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from proxycheck.http_api.page import session as s


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lasts_its_ttl_and_ends_on_close():
    clock = Clock()
    sessions = s.Sessions(ttl=60, clock=clock)
    one = sessions.open()
    assert sessions.get(one.id) == one and len(one.id) >= 40 and one.csrf != one.id
    assert sessions.get(None) is None and sessions.get("guess") is None
    clock.now += 59.9
    assert sessions.get(one.id) == one
    clock.now += 0.2
    assert sessions.get(one.id) is None
    two = sessions.open()
    sessions.close(two.id)
    assert sessions.get(two.id) is None


def test_live_sessions_are_bounded_dropping_the_oldest():
    clock = Clock()
    sessions = s.Sessions(ttl=3600, clock=clock)
    first = sessions.open()
    for _ in range(s.MAX_SESSIONS):
        clock.now += 1
        sessions.open()
    assert sessions.get(first.id) is None
    assert len(sessions._live) == s.MAX_SESSIONS


def test_token_compare():
    assert s.token_matches("abc", "abc")
    assert not s.token_matches("abd", "abc") and not s.token_matches("", "") and not s.token_matches("ab", "abc")
    assert not s.token_matches("\udcff", "abc")  # undecodable input is a mismatch, not a crash


def test_same_origin_names_the_host_the_request_was_sent_to():
    def request(origin: str | None, host: str = "127.0.0.1:8181"):
        headers = {"Host": host, **({"Origin": origin} if origin is not None else {})}
        return make_mocked_request("POST", "/ui/login", headers=headers)

    assert s.same_origin(request("http://127.0.0.1:8181"))
    assert s.same_origin(request("https://proxycheck.internal", host="proxycheck.internal"))  # behind TLS
    for origin in (None, "", "null", "http://127.0.0.1:8182", "http://evil.example", "http://127.0.0.1:8181.evil",
                   "http://[::1"):
        assert not s.same_origin(request(origin)), origin
