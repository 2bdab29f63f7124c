"""Masking passwords by shape, in arguments that do not parse and in free text (pure)."""

import pytest

from proxycheck.masking import mask_argument, redact


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://alice:S3cr3t-PW@[::1", "http://alice:***@[::1"),  # urlsplit raises on this
        ("http://alice:pa/ss#w?d@1.2.3.4:80", "http://alice:***@1.2.3.4:80"),
        ("http://alice:p@ss@1.2.3.4:99999", "http://alice:***@1.2.3.4:99999"),
        ("alice:S3cr3t@1.2.3.4", "alice:***@1.2.3.4"),
        ("1.2.3.4:8080:alice:S3cr3t", "1.2.3.4:8080:***"),
        ("socks5://[::1]:1080", "socks5://[::1]:1080"),
        ("http://alice@1.2.3.4:80", "http://alice@1.2.3.4:80"),  # a login alone is not secret
        ("nofile", "nofile"),
    ],
)
def test_mask_argument(text, masked):
    assert mask_argument(text) == masked


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        ("proxy http://bob:s3cret@1.2.3.4:80 and socks5://u:p%40ss@[::1]:1080, mail user@example.com",
         "proxy http://bob:***@1.2.3.4:80 and socks5://u:***@[::1]:1080, mail user@example.com"),
        ("bad 'http://bob:pa/ss@w?rd@[::1' here", "bad 'http://bob:***@[::1' here"),
        ("http://us@er:pw@host:80", "http://us@er:***@host:80"),
        ("{'Proxy-Authorization': 'Basic Ym9iOnMzY3JldA=='}", "{'Proxy-Authorization': 'Basic ***'}"),
        ("GET http://judge/long?pad=x@y", "GET http://judge/long?pad=x@y"),
    ],
)
def test_redact(line, redacted):
    assert redact(line) == redacted


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://alice:S3cr3t", "http://alice:***"),
        ("http://alice:S3c/r3t#x", "http://alice:***"),
        ("http://alice:1234567", "http://alice:***"),
        ("http://1.2.3.4:8080", "http://1.2.3.4:8080"),
        ("http://1.2.3.4:8080/", "http://1.2.3.4:8080/"),
        ("http://[::1]", "http://[::1]"),
        ("http://alice:S3cr3t]", "http://alice:***"),  # found by test_no_error_quotes_a_password
    ],
)
def test_mask_argument_without_an_at(text, masked):
    assert mask_argument(text) == masked
