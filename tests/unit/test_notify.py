"""The notifier's pure parts as tables: ``events.transitions`` (two snapshots -> events) and the
``Outbox`` (de-duplication, minimum interval) with a clock of our own; the signature and the body."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from proxycheck.daemon.notifying import snapshot
from proxycheck.guard import GuardState
from proxycheck.notify import Snapshot, transitions
from proxycheck.notify.deliver import message, sign
from proxycheck.notify.events import Event
from proxycheck.notify.outbox import Outbox
from proxycheck.selftest import CheckerStatus

OK = Snapshot(checker_ok=True, healthy=8, unhealthy=2)
DEGRADED = Snapshot(checker_ok=False, checker_reason="cannot reach the judge http://127.0.0.1:1/get directly",
                    healthy=8, unhealthy=2)
LOW = Snapshot(checker_ok=True, healthy=3, unhealthy=7)
EXACT = Snapshot(checker_ok=True, healthy=5, unhealthy=5)
NONE_JUDGED = Snapshot(checker_ok=True)
TRIPPED = Snapshot(checker_ok=True, healthy=8, unhealthy=2,
                   guards={"anti-captcha": GuardState("anti-captcha", 20, 600.0, 20, True, None),
                           "capmonster": GuardState("capmonster", 5, 600.0, 1, False, None)})
UNABLE = Snapshot(checker_ok=True, healthy=8, unhealthy=2, unable={"turnstile": "ban: answers everyone 429"})
LEAKY = Snapshot(checker_ok=False, checker_reason="judge via http://alice:S3cr3t@10.0.0.1:3128 failed", healthy=8, unhealthy=2)

# (id, before, after, [(subject, state, kind)])
CASES = [
    ("start-fine", None, OK, []),
    ("start-degraded", None, DEGRADED, [("checker", "firing", "checker_degraded")]),
    ("start-low", None, LOW, [("fleet", "firing", "fleet_unhealthy")]),
    ("start-nothing-judged", None, NONE_JUDGED, []),
    ("start-few-judged", None, Snapshot(checker_ok=True, healthy=0, unhealthy=2, unknown=3), []),
    ("half-judged", None, Snapshot(checker_ok=True, healthy=0, unhealthy=2, unknown=2), [("fleet", "firing", "fleet_unhealthy")]),
    ("same", OK, OK, []),
    ("degraded", OK, DEGRADED, [("checker", "firing", "checker_degraded")]),
    ("degraded-again-other-reason", DEGRADED, Snapshot(checker_ok=False, checker_reason="x", healthy=8, unhealthy=2), []),
    ("recovered", DEGRADED, OK, [("checker", "resolved", "checker_ok")]),
    ("falls-below", OK, LOW, [("fleet", "firing", "fleet_unhealthy")]),
    ("back-above", LOW, OK, [("fleet", "resolved", "fleet_healthy")]),
    ("at-threshold-is-not-below", LOW, EXACT, [("fleet", "resolved", "fleet_healthy")]),
    ("nobody-judged-says-nothing", LOW, NONE_JUDGED, []),
    ("guard-trips", OK, TRIPPED, [("guard:anti-captcha", "firing", "guard_tripped")]),
    ("guard-resets", TRIPPED, OK, [("guard:anti-captcha", "resolved", "guard_reset")]),
    ("target-unable", OK, UNABLE, [("target:turnstile", "firing", "target_unable")]),
    ("target-judges", UNABLE, OK, [("target:turnstile", "resolved", "target_judging")]),
    ("all-at-once", OK, Snapshot(checker_ok=False, checker_reason="r", healthy=1, unhealthy=9,
                                 guards=TRIPPED.guards, unable=UNABLE.unable),
     [("checker", "firing", "checker_degraded"), ("fleet", "firing", "fleet_unhealthy"),
      ("guard:anti-captcha", "firing", "guard_tripped"), ("target:turnstile", "firing", "target_unable")]),
]


@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_transitions(before, after, expected):
    events = transitions(before, after, healthy_below=0.5)
    assert [(e.subject, e.state, e.kind) for e in events] == expected
    for e in events:
        if e.state == "firing":
            assert "To fix:" in e.summary, e.summary


def test_a_firing_event_names_the_reason_and_the_figures():
    (checker,) = transitions(OK, DEGRADED, 0.5)
    assert checker.detail == {"reason": DEGRADED.checker_reason}
    assert DEGRADED.checker_reason in checker.summary and "proxycheck doctor" in checker.summary
    (fleet,) = transitions(OK, LOW, 0.5)
    assert fleet.detail == {"healthy": 3, "judged": 10, "fraction": 0.3, "threshold": 0.5}
    assert fleet.summary.startswith("only 3 of 10 judged proxies (30%) are healthy, below 50%")


def test_no_password_in_an_event():
    (event,) = transitions(OK, LEAKY, 0.5)
    text = json.dumps(event.body())
    assert "S3cr3t" not in text and "alice:***@10.0.0.1:3128" in text


def ev(subject: str, state: str) -> Event:
    return Event(subject, state, f"{subject}_{state}", f"{subject} is {state}")  # type: ignore[arg-type]


# (id, [(time, offered (subject, state) or None)], [(time, sent (subject, state))]); min_interval 60 s.
# Each step offers its event (if any), then asks what is due at that time.
OUTBOX = [
    ("sent-at-once", [(0, ("checker", "firing"))], [(0, ("checker", "firing"))]),
    ("resolved-first-is-dropped", [(0, ("checker", "resolved"))], []),
    ("duplicate-dropped", [(0, ("checker", "firing")), (100, ("checker", "firing"))], [(0, ("checker", "firing"))]),
    ("recovery-waits-for-the-interval", [(0, ("checker", "firing")), (10, ("checker", "resolved")), (59, None), (60, None)],
     [(0, ("checker", "firing")), (60, ("checker", "resolved"))]),
    ("flap-within-the-interval-is-silent",
     [(0, ("checker", "firing")), (10, ("checker", "resolved")), (20, ("checker", "firing")), (60, None), (200, None)],
     [(0, ("checker", "firing"))]),
    ("subjects-are-apart", [(0, ("checker", "firing")), (1, ("fleet", "firing")), (2, ("checker", "resolved")), (62, None)],
     [(0, ("checker", "firing")), (1, ("fleet", "firing")), (62, ("checker", "resolved"))]),
    ("after-the-interval-at-once", [(0, ("checker", "firing")), (61, ("checker", "resolved"))],
     [(0, ("checker", "firing")), (61, ("checker", "resolved"))]),
]


@pytest.mark.parametrize(("steps", "expected"), [c[1:] for c in OUTBOX], ids=[c[0] for c in OUTBOX])
def test_outbox(steps, expected):
    box = Outbox(min_interval=60)
    sent = []
    for at, offered in steps:
        if offered:
            box.offer(ev(*offered))
        sent += [(at, (e.subject, e.state)) for e in box.due(at)]
    assert sent == expected


def test_the_signature_is_hmac_sha256_of_the_body():
    body = json.dumps(message(transitions(OK, DEGRADED, 0.5)[0], {"id": "ab12cd34", "host": "h"})).encode()
    expected = hmac.new(b"k" * 16, body, hashlib.sha256).hexdigest()
    assert sign(b"k" * 16, body) == f"sha256={expected}"
    assert sign(b"k" * 16, body + b" ") != sign(b"k" * 16, body)


def test_the_message_body():
    msg = message(transitions(OK, DEGRADED, 0.5)[0], {"id": "ab12cd34", "host": "h"})
    assert set(msg) == {"version", "source", "instance", "at", "subject", "state", "event", "summary", "detail"}
    assert (msg["version"], msg["source"], msg["subject"], msg["state"], msg["event"]) == \
        (1, "proxycheck", "checker", "firing", "checker_degraded")


# The daemon's observation (daemon/notifying.py): (id, checker ok, notes now, unable last time, unable observed)
OBSERVED = [
    ("ok-takes-the-notes", True, {"turnstile": "ban: 429 to everyone"}, {}, {"turnstile": "ban: 429 to everyone"}),
    ("ok-without-notes", True, {}, {"turnstile": "x"}, {}),
    ("degraded-keeps-the-last", False, {"turnstile": "ban: unreachable", "judge": "down"}, {"recaptcha": "y"}, {"recaptcha": "y"}),
]


@pytest.mark.parametrize(("ok", "notes", "last_unable", "unable"), [c[1:] for c in OBSERVED], ids=[c[0] for c in OBSERVED])
def test_the_observation_keeps_targets_while_degraded(ok, notes, last_unable, unable):
    status = CheckerStatus(ok, "" if ok else "judge down")
    last = Snapshot(checker_ok=True, unable=last_unable)
    snap = snapshot(status, notes, {"healthy": 3, "unhealthy": 1, "unknown": 2, "disabled": 9}, last, {})
    assert dict(snap.unable) == unable
    assert (snap.healthy, snap.unhealthy, snap.unknown, snap.checker_ok) == (3, 1, 2, ok)
    if not ok:
        assert [e.subject for e in transitions(last, snap, 0.5)] == ["checker"]
