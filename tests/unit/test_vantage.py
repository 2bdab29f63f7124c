"""vantage.py: what a check's outcome says about the proxy's door, and when two vantages
disagree (``ip_locked``), on literal sights; the wire's bind failure is ours, not the proxy's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from proxycheck.errors import SourceAddressUnavailable
from proxycheck.solver_addresses import SERVICES, allow_lists, canonical
from proxycheck.vantage import REFUSALS, Sight, ip_lock, seen
from proxycheck.verdict import REASONS
from proxycheck.wire.session import _open

AT = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(("healthy", "reason", "expected"), [
    (True, None, "in"),
    (False, "banned", "in"),  # past the door
    (False, "image_blocked", "in"),
    (False, "ip_leaked", "in"),
    (False, "auth_required", "refused"),
    (False, "auth_rejected", "refused"),
    (False, "request_rejected", "refused"),
    (False, "connect_refused", "refused"),
    (False, "connection_closed", "refused"),
    (False, "connect_timeout", "unknown"),
    (False, "read_timeout", "unknown"),
    (None, "checker_unavailable", "unknown"),
    (False, "ip_locked", "unknown"),  # a verdict, not a sight: rows keep their sights
])
def test_seen(healthy, reason, expected):
    assert seen(healthy, reason) == expected


def sight(vantage: str, address: str | None, how: str, reason: str | None = None) -> Sight:
    return Sight(vantage, address, how, reason, AT)  # type: ignore[arg-type]


@pytest.mark.parametrize(("sights", "code"), [
    ([sight("a", "192.0.2.7", "in"), sight("b", "192.0.2.8", "refused", "auth_required")], 49),
    ([sight("a", "192.0.2.7", "in"), sight("b", "192.0.2.8", "refused", "request_rejected")], 25),
    ([sight("b", "192.0.2.8", "refused", "connect_refused"), sight("a", "192.0.2.7", "in")], 25),  # we are the refused one
    ([sight("a", "192.0.2.7", "in"), sight("b", "192.0.2.8", "in")], None),
    ([sight("a", "192.0.2.7", "refused", "auth_rejected"), sight("b", "192.0.2.8", "refused", "auth_rejected")], None),
    ([sight("a", "192.0.2.7", "in"), sight("b", "192.0.2.8", "unknown", "connect_timeout")], None),
    ([sight("a", "192.0.2.7", "in")], None),
])
def test_ip_lock(sights, code):
    lock = ip_lock(sights, ("capsolver",))
    assert (lock.code if lock else None) == code
    if lock:
        assert lock.detail.startswith("accepts 192.0.2.7 only (from 192.0.2.8: ")
        assert f"gets {code} unless its address is on your provider's allow-list" in lock.detail
        assert "capsolver: 47.253.53.46, " in lock.detail


def test_without_services_the_sentence_says_how_to_get_their_addresses():
    lock = ip_lock([sight("a", None, "in"), sight("b", None, "refused", "auth_required")])
    assert lock is not None
    assert lock.detail.startswith("accepts vantage 'a' only (from vantage 'b': auth_required)")
    assert "[solver].services" in lock.detail


def test_a_refusal_predicts_its_own_reasons_code():
    assert REFUSALS <= set(REASONS) and REASONS["ip_locked"].code == 49
    lock = ip_lock([sight("a", "192.0.2.7", "in"), sight("b", "192.0.2.8", "refused", "connection_closed")])
    assert lock is not None and lock.code == REASONS["connection_closed"].code == 27


def test_every_published_address_has_a_source_and_a_date():
    for service in SERVICES.values():
        assert service.addresses or service.note, service.name
        for p in service.addresses:
            assert p.source.startswith("https://") and len(p.read) == 10, p
    assert canonical("AntiCaptcha") == "anti-captcha" and canonical("nope") is None
    assert allow_lists(("capmonster",)) == ["capmonster: 65.21.190.34, 116.203.55.208"]


def test_an_address_we_cannot_send_from_is_ours_not_the_proxys():
    with pytest.raises(SourceAddressUnavailable, match="cannot connect from 192.0.2.77"):
        asyncio.run(_open("127.0.0.1", 9, "192.0.2.77"))
