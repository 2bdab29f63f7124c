"""wire/http1.py on literal bytes: how a response is framed, and what each broken answer raises."""

from __future__ import annotations

import asyncio

import pytest

from proxycheck.wire.errors import BadResponse, ConnectionClosed
from proxycheck.wire.http1 import ResponseReader, connect_bytes, read_connect_answer, request_bytes


def read(data: bytes, *, eof: bool = True, **kw):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        seen = []
        response = await ResponseReader(reader, **kw).read(seen.append)
        return response, seen

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("raw", "body", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"abc", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", b"abc", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", b"abc", True),
        (b"HTTP/1.0 200 OK\r\n\r\nabc", b"abc", False),  # ends at EOF (RFC 9112 6.3 rule 8)
        (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", b"x", True),
    ],
    ids=["length", "close", "chunked", "http-1.0-until-eof", "204", "interim-100"],
)
def test_framing(raw, body, keep_alive):
    response, seen = read(raw, eof=not keep_alive or raw.startswith(b"HTTP/1.0"))
    assert (response.status, response.body, response.keep_alive, response.complete) == (
        204 if b"204" in raw else 200, body, keep_alive, True)
    assert seen[0] is True and not any(seen[1:])  # first chunk flagged, later ones not


def test_repeated_headers_are_joined_and_names_lower_cased():
    response, _ = read(b"HTTP/1.1 200 OK\r\nVia: a\r\nVIA: b\r\nContent-Length: 0\r\n\r\n")
    assert response.headers["via"] == "a, b" and response.reason == "OK"


@pytest.mark.parametrize(
    ("raw", "error", "phase"),
    [
        (b"", ConnectionClosed, "response_head"),
        (b"HTTP/1.1 200 OK\r\nContent-", ConnectionClosed, "response_head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", ConnectionClosed, "body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", ConnectionClosed, "body"),
        (b"HELLO WORLD\r\n\r\n", BadResponse, "response_head"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", BadResponse, "body"),
    ],
    ids=["nothing", "half-a-head", "short-body", "short-chunk", "not-http", "bad-chunk-size"],
)
def test_broken_answers(raw, error, phase):
    with pytest.raises(error) as caught:
        read(raw)
    assert caught.value.phase == phase


def test_partial_and_limit_are_data_not_errors():
    short, _ = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", partial=True)
    assert (short.complete, short.body, short.keep_alive) == (False, b"abc", False)
    big, _ = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", limit=4)
    assert (big.truncated, big.keep_alive) == (True, False)


def test_connect_answer_stops_at_the_blank_line():
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(b"HTTP/1.0 200 Connection established\r\nProxy-Agent: x\r\n\r\n\x16\x03\x01")
        answer = await read_connect_answer(reader)
        return answer, await reader.read(3)

    answer, rest = asyncio.run(go())
    assert (answer.status, answer.reason, answer.http_version) == (200, "Connection established", "1.0")
    assert rest == b"\x16\x03\x01"  # the tunnel's first bytes are left for TLS


def test_request_bytes_are_what_httpx_sent():
    assert request_bytes("http://h:8080/get?a=1", "h:8080", "UA", None) == (
        b"GET http://h:8080/get?a=1 HTTP/1.1\r\nHost: h:8080\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\n"
        b"Connection: keep-alive\r\nUser-Agent: UA\r\n\r\n")
    assert connect_bytes("h:443", "Basic eDp5") == b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nAccept: */*\r\nProxy-Authorization: Basic eDp5\r\n\r\n"


def test_bounds_on_what_an_answer_can_make_us_hold():
    with pytest.raises(BadResponse) as caught:
        read(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n")
    assert caught.value.phase == "response_head"
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: 20000000\r\n\r\n" + b"x" * 17_000_000
    with pytest.raises(BadResponse) as caught:
        read(huge)
    assert caught.value.phase == "body"
