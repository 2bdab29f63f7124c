"""Header-leak analysis and judge-answer parsing (pure)."""

import json

import pytest

from proxycheck.probes.anonymity import JudgeAnswer, grade, parse_judge_answer

OWN = frozenset({"198.51.100.9"})


def answer(headers, origin="203.0.113.50"):
    return JudgeAnswer({k.lower(): v for k, v in headers.items()}, [o.strip() for o in origin.split(",")], "")


@pytest.mark.parametrize(
    ("headers", "origin", "level", "leak"),
    [
        ({}, "203.0.113.50", "elite", None),
        ({"Via": "1.1 squid (squid/5.7)"}, "203.0.113.50", "anonymous", None),
        ({"X-Forwarded-For": "unknown"}, "203.0.113.50", "anonymous", None),
        ({"X-Forwarded-For": "198.51.100.9"}, "203.0.113.50", "transparent", "x-forwarded-for"),
        ({"Forwarded": 'for="198.51.100.9:4711";proto=http'}, "203.0.113.50", "transparent", "forwarded"),
        ({"X-Real-IP": "198.51.100.9"}, "203.0.113.50", "transparent", "x-real-ip"),
        ({"Client-IP": "198.51.100.9"}, "203.0.113.50", "transparent", "client-ip"),
        ({"True-Client-IP": "198.51.100.9"}, "203.0.113.50", "transparent", "true-client-ip"),
        ({"X-Tinyproxy": "198.51.100.9"}, "203.0.113.50", "transparent", "x-tinyproxy"),
        ({"X-Proxy-ID": "x", "Via": "1.0 198.51.100.9:3128"}, "203.0.113.50", "transparent", "via"),
        ({"X-Custom": "client=198.51.100.9"}, "203.0.113.50", "transparent", "x-custom"),
        ({}, "198.51.100.9", "transparent", "origin"),
        ({}, "198.51.100.9, 203.0.113.50", "transparent", "origin"),  # httpbin's XFF-fed origin
        ({"X-Forwarded-For": "203.0.113.77"}, "203.0.113.50", "anonymous", None),  # a gateway's own chain
        ({"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0.0.0"}, "203.0.113.50", "elite", None),
    ],
)
def test_grade(headers, origin, level, leak):
    g = grade(answer(headers, origin), OWN)
    assert g.level == level
    assert (g.leaks[0][0] if g.leaks else None) == leak


def test_exit_ip_is_what_the_judge_saw_last():
    assert grade(answer({}, "10.0.0.1, 203.0.113.50"), OWN).exit_ip == "203.0.113.50"


def test_ipv6_own_address():
    g = grade(answer({"X-Forwarded-For": "2001:db8::9"}), frozenset({"2001:0db8:0:0::9"}))
    assert g.level == "transparent"


def test_parse_httpbin_json():
    body = json.dumps({"args": {"proxycheck": "n"}, "headers": {"Via": "1.1 squid", "Host": "h"}, "origin": "1.2.3.4"})
    a = parse_judge_answer(body, "application/json")
    assert a.headers["via"] == "1.1 squid" and a.origin == ["1.2.3.4"]


def test_parse_azenv():
    body = """<html><body><pre>
REMOTE_ADDR = 203.0.113.50
REMOTE_PORT = 4242
HTTP_X_FORWARDED_FOR = 198.51.100.9
HTTP_VIA = 1.1 squid
REQUEST_URI = /azenv.php?proxycheck=n
</pre></body></html>"""
    a = parse_judge_answer(body, "text/html")
    assert a.origin == ["203.0.113.50"]
    assert a.headers == {"x-forwarded-for": "198.51.100.9", "via": "1.1 squid"}
    assert grade(a, OWN).level == "transparent"


@pytest.mark.parametrize("body", ["<html>hello</html>", "{\"no\": 1}", "{not json"])
def test_parse_rejects_non_judge(body):
    with pytest.raises(ValueError):
        parse_judge_answer(body)
