"""The endpoint's one parser of numbers and text (http_api/params.py) on literal input."""

from __future__ import annotations

import pytest

from proxycheck.http_api.params import BadParameter, number, plain_text


@pytest.mark.parametrize("text, expected", [
    ("1", 1),
    ("5000", 5000),
    ("0001", 1),
    ("", 7),  # the default
    (None, 7),
    ("9223372036854775807", None),  # 19 digits, but above this route's bound
    ("0", None),
    ("5001", None),
    ("-1", None),
    ("+1", None),
    (" 1", None),
    ("1.0", None),
    ("1e3", None),
    ("²", None),  # str.isdigit() says yes, int() raises
    ("①", None),
    ("١", None),  # int() says 1
    ("１", None),  # fullwidth
    ("9" * 4300, None),  # beyond int()'s digit limit: refused by length first
])
def test_number(text, expected):
    if expected is None:
        with pytest.raises(BadParameter, match=r"^limit: a whole number from 1 to 5000 in ASCII digits, not "):
            number(text, "limit", 1, 5000, default=7)
    else:
        assert number(text, "limit", 1, 5000, default=7) == expected


def test_number_fits_a_64_bit_id():
    assert number(str(2**63 - 1), "id", 1, 2**63 - 1) == 2**63 - 1
    with pytest.raises(BadParameter):
        number(str(2**63), "id", 1, 2**63 - 1)


@pytest.mark.parametrize("params, bad", [
    ({"tag": "us", "after": "http://a:b@c"}, False),
    ({"tag": "ü €"}, False),
    ({"tag": "a\x00b"}, True),
    ({"tag": "\x7f"}, True),
    ({"a\nb": "x"}, True),
])
def test_plain_text(params, bad):
    if bad:
        with pytest.raises(BadParameter, match="control character"):
            plain_text(params)
    else:
        plain_text(params)
