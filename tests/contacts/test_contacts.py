"""Contacts: the directory from the session's chats, one contact, profile pictures, and
whether a number is on WhatsApp."""

from __future__ import annotations

import pytest

from tests.chats.support import encoded, inbound, page, stop, wait_history
from tests.fixtures.app import Api
from tests.messages.support import (
    USER_SUFFIX,
    address,
    data_of,
    error_of,
    parse_time,
    plus,
    ready_pair,
    ready_session,
    send_text,
)

CAROL = "+62 812-3456-7890"
CAROL_ID = "6281234567890" + USER_SUFFIX
# The mock's "not on WhatsApp" range: numbers starting +1 555 0000.
NOT_ON_WHATSAPP = "+1 555 000 0123"


def contacts_url(session: str, tail: str = "") -> str:
    return f"/api/sessions/{session}/contacts{tail}"


async def test_contacts_are_the_people_who_wrote(api: Api) -> None:
    alice, bob = await ready_pair(api)
    await send_text(api, "alice", plus(bob), "hi bob")
    await wait_history(api, "bob", address(alice), 1)
    await inbound(api, "bob", CAROL, "hello from carol")
    await inbound(api, "bob", CAROL, "again")

    items, pagination = await page(api, contacts_url("bob"))
    assert pagination == {"page": 1, "limit": 20, "total": 2, "totalPages": 1}
    by_id = {c["id"]: c for c in items}
    assert set(by_id) == {address(alice), CAROL_ID}
    assert [c["id"] for c in items] == sorted(by_id)
    assert by_id[address(alice)]["pushName"] == alice["pushName"]
    assert by_id[address(alice)]["phoneNumber"] == alice["phoneNumber"]
    assert by_id[CAROL_ID]["pushName"] is None
    assert by_id[CAROL_ID]["phoneNumber"] == "6281234567890"
    for contact in items:
        assert contact["name"] is None
        parse_time(contact["updatedAt"])

    first, pagination = await page(api, contacts_url("bob"), limit=1)
    second, _ = await page(api, contacts_url("bob"), page=2, limit=1)
    assert pagination == {"page": 1, "limit": 1, "total": 2, "totalPages": 2}
    assert [c["id"] for c in first + second] == [c["id"] for c in items]

    # Only inbound messages make contacts: alice has written but heard from no one.
    items, pagination = await page(api, contacts_url("alice"))
    assert items == []
    assert pagination["total"] == 0

    # One contact, by any form of its address.
    for form in (address(alice), encoded(address(alice)), plus(alice), alice["phoneNumber"]):
        contact = data_of(await api.request("GET", contacts_url("bob", f"/{form}")))
        assert contact == by_id[address(alice)], form


async def test_unknown_or_impossible_contact(api: Api) -> None:
    await api.create_session("idle", autoStart=False)
    response = await api.request("GET", contacts_url("idle", f"/{CAROL_ID}"))
    error = error_of(response, 404, "NOT_FOUND")
    assert error["details"] == {"contactId": CAROL_ID}
    for bad in ("nobody", "12", "12@s.whatsapp.net"):
        response = await api.request("GET", contacts_url("idle", f"/{encoded(bad)}"))
        error_of(response, 400, "INVALID_CHAT_ID", bad)
    for params in ({"limit": 0}, {"limit": 101}, {"page": 0}):
        response = await api.request("GET", contacts_url("idle"), params=params)
        error_of(response, 400, "VALIDATION_ERROR", params)


async def test_check_number(api: Api) -> None:
    _, bob = await ready_pair(api)
    cases = [
        (CAROL, "6281234567890", True),
        (plus(bob), bob["phoneNumber"], True),
        (bob["phoneNumber"], bob["phoneNumber"], True),
        (NOT_ON_WHATSAPP, "15550000123", False),
    ]
    for number, digits, exists in cases:
        url = contacts_url("alice", f"/check/{encoded(number)}")
        result = data_of(await api.request("GET", url))
        chat_id = digits + USER_SUFFIX if exists else None
        assert result == {"phoneNumber": digits, "exists": exists, "chatId": chat_id}, number
    # Unencoded `+` and spaces reach the route too, and `check/...` is never a contact id.
    result = data_of(await api.request("GET", contacts_url("alice", f"/check/{CAROL}")))
    assert result["chatId"] == CAROL_ID

    for impossible in ("+1 23", "12345678901234567890", "abc", "+0 000 000"):
        url = contacts_url("alice", f"/check/{encoded(impossible)}")
        error_of(await api.request("GET", url), 400, "INVALID_CHAT_ID", impossible)


async def test_profile_picture(api: Api) -> None:
    _, bob = await ready_pair(api)
    for form in (address(bob), plus(bob), encoded(address(bob))):
        url = contacts_url("alice", f"/{form}/profile-picture")
        picture = data_of(await api.request("GET", url))
        assert picture["url"], form
        assert bob["phoneNumber"] in picture["url"]
    # A number outside the mock network has no picture; asking needs no contact row.
    picture = data_of(
        await api.request("GET", contacts_url("alice", f"/{CAROL_ID}/profile-picture"))
    )
    assert picture == {"url": None}
    response = await api.request("GET", contacts_url("alice", "/nobody/profile-picture"))
    error_of(response, 400, "INVALID_CHAT_ID")


async def test_engine_calls_need_a_ready_session_reads_do_not(api: Api) -> None:
    alice, bob = await ready_pair(api)
    await send_text(api, "alice", plus(bob), "hi")
    await wait_history(api, "bob", address(alice), 1)
    await stop(api, "bob")
    await api.create_session("idle", autoStart=False)
    for session in ("bob", "idle"):
        for tail in (f"/check/{encoded(CAROL)}", f"/{CAROL_ID}/profile-picture"):
            response = await api.request("GET", contacts_url(session, tail))
            error_of(response, 409, "SESSION_NOT_READY", (session, tail))
    # The directory is stored: readable while stopped.
    items, _ = await page(api, contacts_url("bob"))
    assert [c["id"] for c in items] == [address(alice)]
    contact = data_of(await api.request("GET", contacts_url("bob", f"/{address(alice)}")))
    assert contact["pushName"] == alice["pushName"]


async def test_engine_without_the_capability_is_not_supported(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ready_session(api, "alice")
    engine = api.services.engines.get("mock")
    monkeypatch.setattr(engine, "capabilities", engine.capabilities - {"contacts"})
    for tail in (f"/check/{encoded(CAROL)}", f"/{CAROL_ID}/profile-picture"):
        error = error_of(
            await api.request("GET", contacts_url("alice", tail)), 501, "NOT_SUPPORTED"
        )
        assert error["details"] == {"engine": "mock", "capability": "contacts"}
    items, _ = await page(api, contacts_url("alice"))
    assert items == []


async def test_viewer_may_read_contacts(api: Api) -> None:
    await ready_session(api, "alice")
    viewer = await api.new_key("viewer")
    items, _ = await page(api, contacts_url("alice"), key=viewer)
    assert items == []
    url = contacts_url("alice", f"/check/{encoded(CAROL)}")
    assert data_of(await api.request("GET", url, key=viewer))["exists"] is True
    scoped = await api.new_key("viewer", sessions=["alice"])
    await api.create_session("other", autoStart=False)
    response = await api.request("GET", contacts_url("other"), key=scoped)
    error_of(response, 403, "FORBIDDEN")


async def test_following_a_contacts_presence(api: Api) -> None:
    """An engine call for writers: ready sessions only, viewers refused, bad ids 400."""
    await ready_session(api, "alice")
    url = contacts_url("alice", f"/{encoded(CAROL)}/presence")
    assert data_of(await api.request("POST", url)) == {"contactId": CAROL_ID, "subscribed": True}
    viewer = await api.new_key("viewer")
    error_of(await api.request("POST", url, key=viewer), 403, "FORBIDDEN")
    response = await api.request("POST", contacts_url("alice", "/nobody/presence"))
    error_of(response, 400, "INVALID_CHAT_ID")
    await api.create_session("idle", autoStart=False)
    response = await api.request("POST", contacts_url("idle", f"/{CAROL_ID}/presence"))
    error_of(response, 409, "SESSION_NOT_READY")
