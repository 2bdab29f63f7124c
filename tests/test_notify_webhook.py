"""The delivery task against a real local receiver (aiohttp on 127.0.0.1): the signature verifies,
a 500 is retried with backoff and each failure is a log line, a 4xx is not retried, a receiver
that stays down is given up on (logged), a full queue never blocks, and Apprise (the extra)
delivers through its ``json://`` service to the same receiver (notify/deliver.py rules 1-4)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from notify_receiver import Receiver

from proxycheck.notify import Notifications, Notify, Snapshot
from proxycheck.notify.deliver import QUEUE, Sender, message
from proxycheck.notify.events import transitions

SECRET = "w3bhook-secret-" + "x" * 20
OK = Snapshot(checker_ok=True, healthy=8, unhealthy=2)
DEGRADED = Snapshot(checker_ok=False, checker_reason="judge http://alice:S3cr3t@127.0.0.1:1/get down", healthy=8,
                    unhealthy=2)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def settings(url: str, **kw) -> Notify:
    return Notify(**{"webhook_url": url, "secret": SECRET, "retries": 3, "retry_backoff": 0.05, "timeout": 2.0, **kw})


async def deliver(sender: Sender, *msgs: dict) -> None:
    task = asyncio.create_task(sender.run())
    for msg in msgs:
        assert sender.send(msg)
    try:
        await asyncio.wait_for(sender.queue.join(), 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def degraded() -> dict:
    return message(transitions(OK, DEGRADED, 0.5)[0], {"id": "ab12cd34", "host": "test"})


async def test_retries_a_500_and_the_signature_verifies(receiver, caplog):
    receiver.statuses = [500, 500]
    sender = Sender(settings(receiver.url))
    with caplog.at_level(logging.WARNING, "proxycheck.notify"):
        await deliver(sender, degraded())
    assert [r.status for r in receiver.got] == [500, 500, 200]
    assert len({r.body for r in receiver.got}) == 1, "a retry sends the same bytes"
    assert all(r.verifies(SECRET.encode()) for r in receiver.got)
    assert not receiver.got[0].verifies(b"another-secret-xxxxxxxx")
    failures = [r.getMessage() for r in caplog.records]
    assert failures == [f"notify: webhook http://127.0.0.1:{receiver.port} failed (answered HTTP 500), attempt {n} of 4; "
                        f"trying again in {0.05 * 2 ** (n - 1):g} s" for n in (1, 2)]
    (body,) = receiver.delivered()
    assert body["event"] == "checker_degraded" and "alice:***@127.0.0.1" in body["summary"]
    for r in receiver.got:
        assert b"S3cr3t" not in r.body and SECRET.encode() not in r.body
    assert sender.delivered == 1 and sender.failed == 0
    assert "T0KEN-IN-PATH" not in caplog.text and SECRET not in caplog.text


async def test_a_receiver_that_stays_down_is_given_up_on(receiver, caplog):
    receiver.statuses = [503] * 10
    sender = Sender(settings(receiver.url, retries=2))
    with caplog.at_level(logging.WARNING, "proxycheck.notify"):
        await deliver(sender, degraded())
    assert len(receiver.got) == 3
    assert caplog.records[-1].levelno == logging.ERROR
    assert caplog.records[-1].getMessage().startswith(
        f"notify: webhook http://127.0.0.1:{receiver.port} failed (answered HTTP 503) after 3 attempts; message not delivered: "
        "proxycheck's checker is degraded")
    assert sender.failed == 1


async def test_a_4xx_is_not_retried(receiver, caplog):
    receiver.statuses = [400]
    sender = Sender(settings(receiver.url))
    with caplog.at_level(logging.WARNING, "proxycheck.notify"):
        await deliver(sender, degraded())
    assert len(receiver.got) == 1
    assert "failed (answered HTTP 400) after 1 attempt;" in caplog.text


async def test_no_receiver_at_all_is_retried_and_logged(caplog):
    sender = Sender(settings("http://127.0.0.1:9/hook", retries=1))
    with caplog.at_level(logging.WARNING, "proxycheck.notify"):
        await deliver(sender, degraded())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "attempt 1 of 2" in lines[0] and "after 2 attempts" in lines[1], lines


async def test_a_full_queue_drops_the_new_message_and_never_blocks(caplog):
    sender = Sender(settings("http://127.0.0.1:9/hook"))
    with caplog.at_level(logging.ERROR, "proxycheck.notify"):
        accepted = [sender.send(degraded()) for _ in range(QUEUE + 1)]  # no task delivers: it fills up
    assert accepted == [True] * QUEUE + [False]
    assert f"notify: {QUEUE} messages wait for delivery already; dropped:" in caplog.text


async def test_one_message_per_transition_through_the_notifications(receiver):
    clock = [0.0]
    notes = Notifications(settings(receiver.url, min_interval=60), {"id": "ab12cd34", "host": "test"}, clock=lambda: clock[0])
    for at, snap in [(0, OK), (1, DEGRADED), (2, DEGRADED), (3, OK), (4, DEGRADED), (70, DEGRADED), (71, OK), (140, OK)]:
        clock[0] = at
        notes.observe(snap)
    await deliver(notes.sender)
    # 1: degraded; 3 and 4: a flap within the minute, held and back to degraded: nothing; 71: held; 140: ok.
    assert [(m["event"], m["instance"]["id"]) for m in receiver.delivered()] == \
        [("checker_degraded", "ab12cd34"), ("checker_ok", "ab12cd34")]


# Apprise's PGP plugin imports imghdr (deprecated in 3.11); warnings are errors in this suite.
@pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
async def test_apprise_delivers_through_its_json_service(receiver):
    pytest.importorskip("apprise", reason="the apprise extra (pip install '.[apprise]')")
    sender = Sender(Notify(apprise_urls=(f"json://127.0.0.1:{receiver.port}/apprise",), retries=0))
    await deliver(sender, degraded())
    (got,) = receiver.got
    assert got.path == "/apprise"
    body = got.json
    assert body["title"] == "proxycheck: checker degraded" and body["message"].startswith("proxycheck's checker is degraded")
    assert "S3cr3t" not in got.body.decode()
