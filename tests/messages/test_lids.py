"""WhatsApp LIDs through the mock: a sender known only by LID, the mapping arriving
later (its chat merged into the phone number's), and LIDs shown beside phone numbers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncpg.exceptions import DeadlockDetectedError
from sqlalchemy.exc import OperationalError

from openwa.chats.repository import ChatRepository
from openwa.contacts.repository import ContactRepository
from openwa.engines.base import (
    CallReceived,
    ChatUpdated,
    ContactUpdated,
    GroupUpdated,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    ReactionReceived,
)
from openwa.engines.mock.engine import MockClient
from openwa.kit.clock import utcnow
from openwa.kit.ids import whatsapp_message_id
from openwa.messages import lids
from openwa.messages.lids import map_lid
from tests.chats.support import chats, encoded, history, inbound, wait_history
from tests.fixtures.app import Api, wait_for
from tests.fixtures.locks import postgres_only
from tests.messages.support import (
    USER_SUFFIX,
    data_of,
    error_of,
    get_message,
    is_event,
    ready_session,
    recording,
    send_text,
    wait_message,
    wait_sent,
)

CAROL_LID = "100000000000001@lid"
CAROL_ID = "6281234567890" + USER_SUFFIX
DAN_LID = "100000000000002@lid"
DAN_ID = "6281298765432" + USER_SUFFIX
GROUP = "120363000000000001@g.us"


async def post_inbound(api: Api, session: str, **body: Any) -> str:
    response = await api.request("POST", f"/api/sessions/{session}/mock/inbound", json=body)
    message_id: str = data_of(response, 202)["id"]
    return message_id


async def announce(api: Api, session: str, lid: str, phone: str) -> dict[str, Any]:
    body = {"lid": lid, "phoneNumber": phone}
    response = await api.request("POST", f"/api/sessions/{session}/mock/lid", json=body)
    result: dict[str, Any] = data_of(response, 202)
    return result


async def test_a_lid_chat_merges_into_the_phone_numbers_when_the_mapping_arrives(
    api: Api,
) -> None:
    bob = await ready_session(api, "bob")
    # Earlier, one chat under each id: a send to the number, two messages by LID only.
    sent = await send_text(api, "bob", CAROL_ID, "to the number")
    # Its acks end at `read`: waited for, so that no ack lands between the two reads of
    # the history compared below (CI saw `delivered`, then `read`).
    await wait_message(api, "bob", sent["id"], "read")
    first = await inbound(api, "bob", CAROL_LID, "by lid 1")
    second = await inbound(api, "bob", CAROL_LID, "by lid 2")
    stored = await get_message(api, "bob", first)
    assert (stored["chatId"], stored["from"]) == (CAROL_LID, CAROL_LID)
    assert stored["fromLid"] is None
    assert stored["chatLid"] is None
    assert {c["id"] for c in await chats(api, "bob")} == {CAROL_ID, CAROL_LID}

    async with recording(api) as events:
        assert await announce(api, "bob", CAROL_LID, "+62 812-3456-7890") == {
            "contactId": CAROL_ID,
            "lid": CAROL_LID,
        }
        update = await events.one(is_event("contact.update", bob["id"], contactId=CAROL_ID))
    assert update.data == {"contactId": CAROL_ID, "lid": CAROL_LID}

    listed = await chats(api, "bob")
    assert [c["id"] for c in listed] == [CAROL_ID]
    assert listed[0]["unreadCount"] == 2
    merged = await history(api, "bob", CAROL_ID)
    assert [m["id"] for m in merged] == [second, first, sent["id"]]  # newest first
    for message in merged[:2]:
        assert (message["chatId"], message["chatLid"]) == (CAROL_ID, CAROL_LID)
        assert (message["from"], message["fromLid"]) == (CAROL_ID, CAROL_LID)
    assert await history(api, "bob", encoded(CAROL_LID)) == merged  # the LID names it too

    contacts = data_of(await api.request("GET", "/api/sessions/bob/contacts"))
    assert [(c["id"], c["lid"]) for c in contacts] == [(CAROL_ID, CAROL_LID)]
    by_lid = data_of(await api.request("GET", f"/api/sessions/bob/contacts/{CAROL_LID}"))
    assert by_lid["id"] == CAROL_ID

    # Later reports still addressed by LID land in the phone number's chat.
    async with recording(api) as events:
        later = await post_inbound(api, "bob", **{"from": CAROL_LID, "text": "by lid 3"})
        received = await events.one(is_event("message.received", bob["id"], id=later))
    assert received.data["chatId"] == CAROL_ID
    assert received.data["from"] == CAROL_ID
    assert received.data["fromLid"] == CAROL_LID
    assert received.data["chatLid"] == CAROL_LID
    assert not events.matching(is_event("contact.update", bob["id"]))
    # And a send to the LID goes to the same chat.
    reply = await send_text(api, "bob", CAROL_LID, "to the lid")
    assert (reply["chatId"], reply["chatLid"]) == (CAROL_ID, CAROL_LID)
    items = await wait_history(api, "bob", CAROL_ID, 5)
    assert [m["id"] for m in items] == [reply["id"], later, second, first, sent["id"]]
    assert [c["id"] for c in await chats(api, "bob")] == [CAROL_ID]
    # Marked read by the LID too [before: nothing found under it, `marked` 0].
    response = await api.request("POST", f"/api/sessions/bob/chats/{encoded(CAROL_LID)}/read")
    assert data_of(response) == {"chatId": CAROL_ID, "marked": 3}
    assert [c["unreadCount"] for c in await chats(api, "bob")] == [0]


async def test_a_chat_marked_read_while_its_lid_merges_is_marked(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its unread messages were read under the LID; the merge moved them to the number
    during the engine's call: the marks went by chat, found none and answered 0 with
    the chat still unread, although WhatsApp had been told they were read."""
    bob = await ready_session(api, "bob")
    first = await inbound(api, "bob", CAROL_LID, "by lid")
    mark_read = MockClient.mark_read

    async def merged_meanwhile(client: MockClient, *args: Any) -> None:
        async with api.services.db() as db, db.begin():
            await map_lid(db, bob["id"], CAROL_ID, CAROL_LID)
        await mark_read(client, *args)

    monkeypatch.setattr(MockClient, "mark_read", merged_meanwhile)
    response = await api.request("POST", f"/api/sessions/bob/chats/{encoded(CAROL_LID)}/read")
    assert data_of(response) == {"chatId": CAROL_LID, "marked": 1}
    assert (await get_message(api, "bob", first))["chatId"] == CAROL_ID
    assert [(c["id"], c["unreadCount"]) for c in await chats(api, "bob")] == [(CAROL_ID, 0)]


async def test_a_mapping_given_with_a_message_is_learned_and_shown(api: Api) -> None:
    bob = await ready_session(api, "bob")
    old = await inbound(api, "bob", DAN_LID, "before the mapping")
    async with recording(api) as events:
        body = {"from": DAN_ID, "fromLid": DAN_LID, "text": "mapped by the engine"}
        mapped = await post_inbound(api, "bob", **body)
        received = await events.one(is_event("message.received", bob["id"], id=mapped))
        update = events.matching(is_event("contact.update", bob["id"]))
    assert [e.data for e in update] == [{"contactId": DAN_ID, "lid": DAN_LID}]
    assert received.data["chatId"] == DAN_ID
    assert received.data["from"] == DAN_ID
    assert received.data["chatLid"] == DAN_LID
    assert received.data["fromLid"] == DAN_LID
    assert [m["id"] for m in await history(api, "bob", DAN_ID)] == [mapped, old]
    assert [c["id"] for c in await chats(api, "bob")] == [DAN_ID]

    # Known now: the next one fires no contact.update.
    async with recording(api) as events:
        again = await post_inbound(api, "bob", **body)
        await events.one(is_event("message.received", bob["id"], id=again))
        assert not events.matching(is_event("contact.update", bob["id"]))


async def test_group_messages_from_lid_participants_show_the_phone_sender(api: Api) -> None:
    bob = await ready_session(api, "bob")
    unmapped = await post_inbound(api, "bob", **{"from": DAN_LID, "chatId": GROUP, "text": "a"})
    await wait_history(api, "bob", GROUP, 1)
    assert (await get_message(api, "bob", unmapped))["from"] == DAN_LID

    await announce(api, "bob", DAN_LID, DAN_ID)
    async with recording(api) as events:
        later = await post_inbound(api, "bob", **{"from": DAN_LID, "chatId": GROUP, "text": "b"})
        received = await events.one(is_event("message.received", bob["id"], id=later))
    assert received.data["chatId"] == GROUP
    assert "chatLid" not in received.data
    assert (received.data["from"], received.data["fromLid"]) == (DAN_ID, DAN_LID)
    moved = await get_message(api, "bob", unmapped)
    assert (moved["chatId"], moved["from"], moved["fromLid"]) == (GROUP, DAN_ID, DAN_LID)
    assert [c["id"] for c in await chats(api, "bob")] == [GROUP]

    # The mock's LID controls refuse what is not a LID or a phone number.
    url = "/api/sessions/bob/mock/lid"
    response = await api.request("POST", url, json={"lid": "123", "phoneNumber": CAROL_ID})
    error_of(response, 400, "VALIDATION_ERROR")
    response = await api.request("POST", url, json={"lid": CAROL_LID, "phoneNumber": GROUP})
    error_of(response, 400, "INVALID_CHAT_ID")
    body = {"from": DAN_LID, "fromLid": CAROL_LID, "text": "x"}
    response = await api.request("POST", "/api/sessions/bob/mock/inbound", json=body)
    error_of(response, 400, "VALIDATION_ERROR")


def by_lid(text: str) -> MessageReceived:
    return MessageReceived(
        id=whatsapp_message_id(),
        chat_id=CAROL_LID,
        sender=CAROL_LID,
        type="text",
        content={"text": text},
        timestamp=utcnow(),
        push_name="Caroline",
    )


async def test_contact_reports_rename_and_map_within_one_run(api: Api) -> None:
    bob = await ready_session(api, "bob")
    await inbound(api, "bob", CAROL_ID, "hello")
    client = api.services.runtime.client(bob["id"])
    assert isinstance(client, MockClient)
    async with recording(api) as events:
        await client.emit(ContactUpdated(CAROL_ID, push_name="Carol"))
        update = await events.one(is_event("contact.update", bob["id"]))
    assert update.data == {"contactId": CAROL_ID, "pushName": "Carol"}
    contact = data_of(await api.request("GET", f"/api/sessions/bob/contacts/{CAROL_ID}"))
    assert (contact["pushName"], contact["lid"]) == ("Carol", None)

    # Queued together, so applied as one run: a message by LID, the mapping, another.
    before, after = by_lid("before"), by_lid("after")
    async with recording(api) as events:
        for report in (before, ContactUpdated(CAROL_ID, lid=CAROL_LID), after):
            await client.emit(report)
        received = await events.wait(is_event("message.received", bob["id"]), 2)
    assert [(e.data["chatId"], e.data.get("fromLid")) for e in received] == [
        (CAROL_LID, None),
        (CAROL_ID, CAROL_LID),
    ]
    items = await wait_history(api, "bob", CAROL_ID, 3)
    assert [m["text"] for m in items] == ["after", "before", "hello"]
    assert [c["id"] for c in await chats(api, "bob")] == [CAROL_ID]
    contacts = data_of(await api.request("GET", "/api/sessions/bob/contacts"))
    assert [(c["id"], c["pushName"], c["lid"]) for c in contacts] == [
        (CAROL_ID, "Caroline", CAROL_LID)  # the name her messages carry
    ]


async def test_every_report_naming_a_mapped_lid_names_the_phone_number(api: Api) -> None:
    """Reactions, votes, edits, revokes, readers, presence, calls, chat and group changes
    and mentions: once a LID is mapped, events say the phone number, whatever WhatsApp
    addressed."""
    bob = await ready_session(api, "bob")
    await announce(api, "bob", CAROL_LID, CAROL_ID)
    sent = await send_text(api, "bob", CAROL_ID, "hello")
    await wait_sent(api, "bob", sent["id"])
    client = api.services.runtime.client(bob["id"])
    assert isinstance(client, MockClient)
    at = utcnow()
    reports = [
        ReactionReceived(sent["id"], CAROL_LID, CAROL_LID, "👍"),
        PollVoted("poll-1", CAROL_LID, CAROL_LID, ["a"]),
        MessageEdited("m-1", CAROL_LID, CAROL_LID, "new text", at),
        MessageRevoked("m-2", CAROL_LID, by=CAROL_LID),
        # `played`: the mock's own acks of the send stop at `read` and may come first
        # (statuses only move forward, so a `read` by Carol would then say nothing).
        MessageAck(sent["id"], GROUP, "played", by=CAROL_LID),
        PresenceUpdated(CAROL_LID, CAROL_LID, "composing"),
        CallReceived("call-1", CAROL_LID, False, False, at),
        ChatUpdated(CAROL_LID, ephemeral_seconds=86400),
        GroupUpdated(GROUP, "add", [CAROL_LID, DAN_LID], by=CAROL_LID),
        MessageReceived(
            id=whatsapp_message_id(),
            chat_id=GROUP,
            sender=DAN_ID,
            type="text",
            content={"text": "hi @carol", "mentions": [CAROL_LID, DAN_LID]},
            timestamp=at,
        ),
    ]
    async with recording(api) as events:
        for report in reports:
            await client.emit(report)
        seen = {
            name: (await events.one(is_event(name, bob["id"]))).data
            for name in (
                "message.reaction",
                "message.poll_vote",
                "message.edited",
                "message.revoked",
                "presence.update",
                "call.received",
                "chat.update",
                "group.update",
                "message.received",
            )
        }
        # The receipt names its reader.
        receipt = await events.one(is_event("message.ack", bob["id"], status="played"))
    for name in ("message.reaction", "message.poll_vote", "message.edited", "presence.update"):
        assert (seen[name]["chatId"], seen[name]["from"]) == (CAROL_ID, CAROL_ID), name
    assert (seen["message.revoked"]["chatId"], seen["message.revoked"]["by"]) == (CAROL_ID,) * 2
    assert seen["call.received"]["from"] == CAROL_ID
    assert seen["chat.update"]["chatId"] == CAROL_ID
    # Only the mapped LID changes; an unmapped one stays as WhatsApp said it.
    assert seen["group.update"]["participants"] == [CAROL_ID, DAN_LID]
    assert seen["group.update"]["by"] == CAROL_ID
    assert seen["message.received"]["mentions"] == [CAROL_ID, DAN_LID]
    assert receipt.data["by"] == CAROL_ID
    stored = await get_message(api, "bob", seen["message.received"]["id"])
    assert stored["mentions"] == [CAROL_ID, DAN_LID]


async def mapped(api: Api, session: str, lid: str, phone: str) -> None:
    """Report the mapping and wait for its merge to be stored."""
    await announce(api, session, lid, phone)
    await wait_for(
        lambda: api.request("GET", f"/api/sessions/{session}/contacts/{lid}"),
        lambda r: r.status_code == 200,
        20,
        "the mapping stored",
    )


async def test_a_send_to_a_lid_mapped_while_it_is_accepted_goes_to_the_number(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send read the mapping before storing its media and writing: a merge that
    came in between left it under the LID for good, a chat apart."""
    await ready_session(api, "bob")
    service = api.services.messages
    before = service._by_phone_number

    async def mapped_meanwhile(session_id: str, chat_id: str) -> tuple[str, str | None]:
        found = await before(session_id, chat_id)
        await mapped(api, "bob", CAROL_LID, CAROL_ID)
        return found

    monkeypatch.setattr(service, "_by_phone_number", mapped_meanwhile)
    sent = await send_text(api, "bob", CAROL_LID, "while mapped")
    assert (sent["chatId"], sent["chatLid"]) == (CAROL_ID, CAROL_LID)
    stored = await get_message(api, "bob", sent["id"])
    assert (stored["chatId"], stored["chatLid"]) == (CAROL_ID, CAROL_LID)


async def test_message_sent_names_the_chat_a_merge_moved_the_message_to(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`message.sent` was made from the row read before the send: a mapping that came
    during the send left it naming the LID after `contact.update` had merged it."""
    bob = await ready_session(api, "bob")
    client = api.services.runtime.client(bob["id"])
    real = client.send_many  # type: ignore[attr-defined]

    async def mapped_during(outgoing: Any) -> Any:
        await mapped(api, "bob", CAROL_LID, CAROL_ID)
        return await real(outgoing)

    monkeypatch.setattr(client, "send_many", mapped_during)
    async with recording(api) as events:
        sent = await send_text(api, "bob", CAROL_LID, "while sending")
        assert sent["chatId"] == CAROL_LID
        announced = await events.one(is_event("message.sent", bob["id"], id=sent["id"]), 20)
    assert (announced.data["chatId"], announced.data["chatLid"]) == (CAROL_ID, CAROL_LID)


async def test_a_send_to_a_lid_beside_its_uncommitted_merge_goes_to_the_number(
    api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL, READ COMMITTED: the send saw no mapping (the merge had not committed)
    and the merge no message to move (the send had not): the message stayed under the
    LID for good. The run that merged moves it after its commit. The send waits for
    nothing meanwhile: sends to other chats are not held up behind the merge."""
    postgres_only(database_url)
    await ready_session(api, "bob")
    merging, release = asyncio.Event(), asyncio.Event()

    async def held_open(*args: Any) -> None:
        await map_lid(*args)
        merging.set()
        await release.wait()  # the run's transaction stays open, its merge in it

    monkeypatch.setattr(lids, "map_lid", held_open)
    await announce(api, "bob", CAROL_LID, CAROL_ID)
    await merging.wait()
    sent = await send_text(api, "bob", CAROL_LID, "beside the merge")
    assert (sent["chatId"], sent["chatLid"]) == (CAROL_LID, None)  # nothing to map to yet
    other = await send_text(api, "bob", DAN_ID, "another chat")
    assert other["chatId"] == DAN_ID
    release.set()

    async def moved() -> tuple[str, str | None]:
        stored = await get_message(api, "bob", sent["id"])
        return stored["chatId"], stored["chatLid"]

    await wait_for(moved, lambda found: found == (CAROL_ID, CAROL_LID), 20, "the move")
    assert {c["id"] for c in await chats(api, "bob")} >= {CAROL_ID}
    assert CAROL_LID not in {c["id"] for c in await chats(api, "bob")}


async def test_a_send_to_a_lid_whose_merge_commits_before_it_goes_to_the_number(
    api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: the send looked the LID up (no mapping), then a merge ran and
    committed (moving nothing: the send's row was not written yet), then the send
    committed. The send looks again after its commit, moves it, and answers so."""
    postgres_only(database_url)
    await ready_session(api, "bob")
    phone_id = ContactRepository.phone_id
    lookups: list[str] = []
    merged: list[bool] = []

    async def merge_after_the_lookup(repo: ContactRepository, session_id: str, address: str) -> str:
        found = await phone_id(repo, session_id, address)
        lookups.append(address)
        # The first is the send's read before its write; the second, in its write.
        if lookups.count(CAROL_LID) == 2:
            merged.append(True)
            await announce(api, "bob", CAROL_LID, CAROL_ID)

            async def mapped() -> str:
                async with api.services.db() as db:
                    return await phone_id(ContactRepository(db), session_id, address)

            await wait_for(mapped, lambda found: found == CAROL_ID, 20, "the merge's commit")
        return found

    monkeypatch.setattr(ContactRepository, "phone_id", merge_after_the_lookup)
    sent = await send_text(api, "bob", CAROL_LID, "after the merge", idempotency_key="once")
    assert merged
    assert (sent["chatId"], sent["chatLid"]) == (CAROL_ID, CAROL_LID)
    stored = await get_message(api, "bob", sent["id"])
    assert (stored["chatId"], stored["chatLid"]) == (CAROL_ID, CAROL_LID)
    # A replay answers as the send did [before (review): the LID, as first stored].
    again = await send_text(api, "bob", CAROL_LID, "after the merge", idempotency_key="once")
    assert (again["id"], again["chatId"], again["chatLid"]) == (sent["id"], CAROL_ID, CAROL_LID)


async def test_a_merge_between_the_reads_of_the_chats_page_takes_no_chat_away(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads the page in several statements, a snapshot each: a merge that
    committed between them took the LID's chat away under the page, which answered
    `data: []` with `total: 1`. The page is read again."""
    bob = await ready_session(api, "bob")
    await inbound(api, "bob", CAROL_LID, "by lid")
    paginate = ChatRepository.paginate
    merged: list[bool] = []

    async def merging_meanwhile(repo: ChatRepository, *args: Any, **kwargs: Any) -> Any:
        found = await paginate(repo, *args, **kwargs)
        if not merged:
            merged.append(True)
            async with api.services.db() as db, db.begin():
                await map_lid(db, bob["id"], CAROL_ID, CAROL_LID)
        return found

    monkeypatch.setattr(ChatRepository, "paginate", merging_meanwhile)
    response = await api.request("GET", "/api/sessions/bob/chats")
    assert merged
    # PostgreSQL reads it again after the merge; SQLite's one snapshot is from before it.
    assert [c["id"] for c in data_of(response)] in ([CAROL_ID], [CAROL_LID])
    assert response.json()["pagination"]["total"] == 1


async def test_a_merge_whose_commit_went_through_unanswered_still_moves_what_was_left(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's commit reached the database but its answer was lost: the retry found
    the LID mapped already, learned nothing, and skipped the move after its commit, so
    a send written under the LID beside the first try stayed there."""
    await ready_session(api, "bob")
    group = api.services.reports._reports
    run = group.run
    answered: list[bool] = []

    async def unanswered(work: Any) -> Any:
        result = await run(work)
        if not answered:
            answered.append(True)
            # What PostgreSQL says when it breaks a deadlock: a failure of the moment.
            raise OperationalError("COMMIT", {}, DeadlockDetectedError("deadlock"))
        return result

    moved: list[list[str]] = []
    move = api.services.reports._move_left_behind

    async def noted(session_id: str, learned: list[str]) -> None:
        moved.append(learned)
        await move(session_id, learned)

    monkeypatch.setattr(group, "run", unanswered)
    monkeypatch.setattr(api.services.reports, "_move_left_behind", noted)
    await announce(api, "bob", CAROL_LID, CAROL_ID)
    await wait_for(lambda: asyncio.sleep(0, moved), bool, 20, "the move after the commit")
    assert answered
    assert moved == [[CAROL_LID]]
