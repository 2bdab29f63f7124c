"""Pure values: Proxy converters, parameters from keywords and HTTP queries, the [worker] section."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from proxycheck.errors import ConfigError, ProxyParseError
from proxycheck.proxy import Proxy, parse_proxy_url
from proxycheck.worker import filters_from_query, make_filters, proxy_from_reference
from proxycheck.worker.settings import NoConfiguration, load

IP = Proxy("http", "203.0.113.5", 8080, "user", "s3cret")


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        (IP, {"proxyType": "http", "proxyAddress": "203.0.113.5", "proxyPort": 8080, "proxyLogin": "user", "proxyPassword": "s3cret"}),
        (Proxy("https", "203.0.113.5", 443), {"proxyType": "http", "proxyAddress": "203.0.113.5", "proxyPort": 443}),
        (Proxy("socks4a", "203.0.113.5", 1080, "u"), {"proxyType": "socks4", "proxyAddress": "203.0.113.5", "proxyPort": 1080, "proxyLogin": "u"}),
        (Proxy("socks5h", "2001:db8::1", 1080), {"proxyType": "socks5", "proxyAddress": "2001:db8::1", "proxyPort": 1080}),
        (Proxy("socks5", "px.example", 1080, resolved_ip="198.51.100.9"), {"proxyType": "socks5", "proxyAddress": "198.51.100.9", "proxyPort": 1080}),
    ],
)
def test_as_anticaptcha(proxy, expected):
    """The shape, on documentation addresses: opted in (proxy.py rule 6)."""
    assert proxy.as_anticaptcha(local_test=True) == expected


def test_as_anticaptcha_refuses_an_unresolved_host_name():
    with pytest.raises(ProxyParseError, match="address: 'px.example' is a host name that no check has resolved"):
        Proxy("http", "px.example", 3128).as_anticaptcha()


@pytest.mark.parametrize(
    ("proxy", "expected"),
    [
        (IP, {"proxy": "user:s3cret@203.0.113.5:8080", "proxytype": "HTTP"}),
        (Proxy("https", "203.0.113.5", 443), {"proxy": "203.0.113.5:443", "proxytype": "HTTPS"}),
        (Proxy("socks4", "203.0.113.5", 1080, "u"), {"proxy": "u@203.0.113.5:1080", "proxytype": "SOCKS4"}),
        (Proxy("socks5h", "px.example", 1080, "u", "p", resolved_ip="198.51.100.9"), {"proxy": "u:p@198.51.100.9:1080", "proxytype": "SOCKS5"}),
        (Proxy("socks5", "2001:db8::1", 1080), {"proxy": "[2001:db8::1]:1080", "proxytype": "SOCKS5"}),
    ],
)
def test_as_2captcha(proxy, expected):
    """The shape, on documentation addresses: opted in (proxy.py rule 6)."""
    assert proxy.as_2captcha(local_test=True) == expected


def test_as_2captcha_refuses_credentials_it_cannot_carry():
    with pytest.raises(ProxyParseError, match="password: contains ':' or '@'"):
        Proxy("http", "203.0.113.5", 8080, "user", "p@ss").as_2captcha(local_test=True)


PUBLIC = "8.8.4.4"  # a public address: nothing connects to it here


@pytest.mark.parametrize(
    ("host", "resolved", "rule", "source"),
    [
        ("127.0.0.1", None, "a loopback address", "RFC 1122"),
        ("127.1.2.3", None, "a loopback address", "RFC 1122"),
        ("::1", None, "a loopback address", "RFC 4291"),
        ("::ffff:127.0.0.1", None, "a loopback address", "RFC 1122"),
        ("169.254.10.1", None, "a link-local address", "RFC 3927"),
        ("fe80::1", None, "a link-local address", "RFC 3927"),
        ("192.0.2.1", None, "a documentation address", "RFC 5737"),
        ("198.51.100.7", None, "a documentation address", "RFC 5737"),
        ("203.0.113.5", None, "a documentation address", "RFC 5737"),
        ("2001:db8::1", None, "a documentation address", "RFC 3849"),
        ("10.1.2.3", None, "a private or reserved address", "RFC 1918"),
        ("172.16.0.9", None, "a private or reserved address", "RFC 1918"),
        ("192.168.1.1", None, "a private or reserved address", "RFC 1918"),
        ("fd00::5", None, "a private or reserved address", "RFC 4193"),
        ("100.64.0.1", None, "a private or reserved address", "RFC 6598"),
        ("0.0.0.0", None, "a private or reserved address", "IANA"),
        ("px.example", "10.0.0.8", "a private or reserved address", "RFC 1918"),  # the IP resolved at check time
    ],
)
@pytest.mark.parametrize("method", ["as_anticaptcha", "as_2captcha"])
def test_converters_refuse_what_a_captcha_service_cannot_reach(method, host, resolved, rule, source):
    proxy = Proxy("socks5", host, 1080, "u", "s3cret-pw", resolved_ip=resolved)
    with pytest.raises(ProxyParseError) as refused:
        getattr(proxy, method)()
    message = str(refused.value)
    assert message.startswith(f"address: {resolved or host} is {rule} (") and source in message
    assert "https://anti-captcha.com/apidoc/task-types/RecaptchaV2Task" in message
    assert f"{method}(local_test=True)" in message and "s3cret-pw" not in message
    assert getattr(proxy, method)(local_test=True)  # the opt-in for a test on local proxies


@pytest.mark.parametrize("host", [PUBLIC, "2001:4860:4860::8888"])
def test_converters_take_a_public_address(host):
    proxy = Proxy("socks5", host, 1080)
    assert proxy.as_anticaptcha()["proxyAddress"] == host
    assert proxy.as_2captcha()["proxy"].startswith(f"[{host}]" if ":" in host else host)


def test_as_2captcha_keeps_an_unresolved_host_name():
    """2captcha takes host names ("Proxy IP address or hostname"); anti-captcha does not."""
    assert Proxy("http", "px.example", 3128).as_2captcha() == {"proxy": "px.example:3128", "proxytype": "HTTP"}


def test_client_forms_and_identity():
    p = parse_proxy_url("http://user:p%40ss@203.0.113.5:8080")
    assert p.httpx_proxy == "http://user:p%40ss@203.0.113.5:8080"
    assert p.requests_proxies == {"http": p.url, "https": p.url}
    checked = Proxy(p.scheme, p.host, p.port, p.username, p.password, exit_ip="198.51.100.1", latency_ms=80.0)
    assert checked == p and hash(checked) == hash(p) and {checked, p} == {p}  # facts are not identity
    assert "p@ss" not in repr(checked) and "p%40ss" not in str(checked)
    with pytest.raises(AttributeError):
        checked.latency_ms = 1.0  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {}),
        ({"tags": "us,fast"}, {"tags": frozenset({"us", "fast"})}),
        (MultiDict([("tag", "us"), ("tag", "fast")]), {"tags": frozenset({"us", "fast"})}),
        ({"scheme": "socks5,socks5h", "anonymity": "elite"}, {"scheme": frozenset({"socks5", "socks5h"}), "anonymity": "elite"}),
        (MultiDict([("exclude", "http://u:a,b@1.2.3.4:80"), ("exclude", "http://1.2.3.5:80")]), {"exclude": ["http://u:a,b@1.2.3.4:80", "http://1.2.3.5:80"]}),
        ({"strategy": "least_used", "format": "anticaptcha"}, {"strategy": "least_used"}),
    ],
)
def test_filters_from_query(query, expected):
    assert filters_from_query(query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"color": "red"}, "unknown parameter 'color'"),
        ({"strategy": "fair"}, "strategy: 'fair' is not one of"),
        ({"anonymity": "max"}, "anonymity: 'max' is not a level"),
        ({"exclude": "ftp://x:1"}, "proxy: type"),
    ],
)
def test_filters_from_query_rejects_with_the_parameter_named(query, message):
    with pytest.raises(ValueError, match=message):
        filters_from_query(query)


def test_make_filters_and_references():
    f = make_filters(tags="us", scheme="SOCKS5", exclude=IP)
    assert (f.tags, f.schemes, f.exclude) == (frozenset({"us"}), frozenset({"socks5"}), frozenset({IP.key}))
    assert proxy_from_reference("http://user:***@203.0.113.5:8080").key == IP.key  # masked works
    assert proxy_from_reference({"url": IP.url}) == IP
    with pytest.raises(ValueError, match="proxy: expected a proxy URL"):
        proxy_from_reference(42)


def test_worker_section_defaults_and_discovery(tmp_path, monkeypatch):
    with pytest.raises(NoConfiguration, match="no configuration found"):
        load()  # nothing names a database
    settings, worker = load(database_given=True)
    assert worker.max_age == 900 and worker.strategy == "random" and settings.source_file is None
    config = tmp_path / "conf" / "pc.toml"
    config.parent.mkdir()
    config.write_text('database_url = "sqlite:////from/file.db"\n[health]\ninterval = 60\n[worker]\nstrategy = "fastest"\n')
    monkeypatch.setenv("PROXYCHECK_CONFIG", str(config))
    settings, worker = load()
    assert (settings.resolved_database_url, worker.max_age, worker.strategy) == ("sqlite:////from/file.db", 180, "fastest")
    monkeypatch.setenv("PROXYCHECK_DATABASE_URL", "sqlite:////from/env.db")
    assert load()[0].resolved_database_url == "sqlite:////from/env.db"
    (tmp_path / "cwd" / "proxycheck.toml").write_text("[health]\ninterval = 30\n[worker]\nmax_age = 30\n")
    monkeypatch.delenv("PROXYCHECK_CONFIG")
    assert load()[1].max_age == 30  # ./proxycheck.toml when no variable names a file


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[worker]\nmax_agee = 3\n", r"\[worker\]: unknown key 'max_agee' \(known: [a-z_, ]*max_age, "),
        ("[worker]\nmax_age = 'soon'\n", r"\[worker\].max_age: expected a number"),
        ("[worker]\nmax_age = 0\n", r"\[worker\].max_age: must be a finite number greater than 0"),
        ("[worker]\nstrategy = 'fair'\n", r"\[worker\].strategy: must be one of random, .*, got 'fair'"),
        ("[worker]\nmax_reported_percent = 150\n", r"\[worker\].max_reported_percent: must be a finite number greater than 0 and at most 100, got 150"),
        ("worker = 3\n", r"\[worker\] must be a table"),
    ],
)
def test_worker_section_errors_name_the_key(tmp_path, toml, message):
    config = tmp_path / "pc.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load(config)


def test_daemon_and_workers_read_one_file(tmp_path):
    """`proxycheck run` must accept the [worker] section its workers read (one file for both)."""
    config = tmp_path / "pc.toml"
    config.write_text("[health]\ninterval = 30\n[worker]\nmax_age = 42\nstrategy = 'least_used'\n")
    from proxycheck.config import load_settings

    assert load_settings(str(config)).worker.max_age == 42
    assert load(config)[1].strategy == "least_used"
