"""Engine reports beyond messages and acks, applied by the core (`ReportApplier`):
edits, poll votes, reads from the phone, server refusals, presence, calls, chat and
group changes, unknown messages; each what the contract's Events section says, on both
databases, in the batched runs the runtime hands over."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import openwa.messages.pending_edits as pending_edits_module
from openwa.db.models import PendingEditRow, SessionRow
from openwa.engines.base import (
    UNDECRYPTABLE,
    CallReceived,
    ChatUpdated,
    EngineEvent,
    GroupUpdated,
    MessageAck,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PollVoted,
    PresenceUpdated,
    ReadBySelf,
)
from tests.fixtures.app import Api, AppFactory
from tests.messages.support import (
    get_message,
    plus,
    ready_session,
    send_text,
    stored_and_set_aside,
    wait_sent,
)

ANN = "4915100000001@s.whatsapp.net"
GROUP = "120363000000000001@g.us"
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def api(app_factory: AppFactory) -> AsyncIterator[Api]:
    # No acks from the mock network: a sent message stays `sent` until a test acks it.
    async with app_factory.running(mock_ack_delay_ms=600_000) as started:
        yield started


async def logged(api: Api, session_id: str, events: str = "*") -> list[dict[str, Any]]:
    params = {"sessions": session_id, "events": events, "limit": 1000}
    response = await api.request("GET", "/api/events", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]["events"]
    return found


async def session_row(api: Api, name: str, **body: Any) -> SessionRow:
    session = await ready_session(api, name, **body)
    row = api.services.directory.get(session["id"])
    assert row is not None
    return row


def text_from(sender: str, message_id: str, text: str, **extra: Any) -> MessageReceived:
    return MessageReceived(
        id=message_id,
        chat_id=sender,
        sender=sender,
        type="text",
        content={"text": text},
        timestamp=AT,
        **extra,
    )


async def apply(api: Api, row: SessionRow, *reports: EngineEvent) -> None:
    await api.services.reports.on_engine_events(row, list(reports))


async def test_edits_history_revokes_poll_votes_and_unknown_messages(api: Api) -> None:
    """An edit changes the text and keeps the history; from history, stored without an
    event (revokes too); a poll vote names the poll by our id; an unknown message is
    stored with its raw type and announced only to who names `message.unknown`."""
    row = await session_row(api, "alice")
    edit = MessageEdited("3EB0E1", ANN, ANN, "second", AT + timedelta(minutes=1))
    await apply(api, row, text_from(ANN, "3EB0E1", "first"), edit)
    await apply(api, row, edit)  # reported again: nothing changes
    later = MessageEdited("3EB0E1", ANN, ANN, "third", AT + timedelta(minutes=2), history=True)
    await apply(api, row, later)
    message = await get_message(api, row.id, "3EB0E1")
    assert message["text"] == "third"
    assert message["edits"] == [
        {"text": "first", "at": "2026-12-01T09:01:00Z"},
        {"text": "second", "at": "2026-12-01T09:02:00Z"},
    ]
    edited = await logged(api, row.id, "message.edited")
    assert [e["data"] for e in edited] == [
        {
            "id": "3EB0E1",
            "chatId": ANN,
            "from": ANN,
            "text": "second",
            "editedAt": "2026-12-01T09:01:00.000Z",
        }
    ]

    # A revoke from history: stored, not announced.
    await apply(api, row, text_from(ANN, "3EB0R1", "oops"))
    await apply(api, row, MessageRevoked("3EB0R1", ANN, ANN, history=True))
    assert (await get_message(api, row.id, "3EB0R1"))["revoked"] is True
    assert await logged(api, row.id, "message.revoked") == []

    poll = MessageReceived("3EB0P1", ANN, ANN, "poll", {"text": "Lunch?"}, AT, push_name="Ann")
    await apply(api, row, poll, PollVoted("3EB0P1", ANN, ANN, ["pizza"]))
    await apply(api, row, PollVoted("3EB0UNKNOWN", ANN, ANN, []))
    votes = [e["data"] for e in await logged(api, row.id, "message.poll_vote")]
    assert votes == [
        {"pollId": "3EB0P1", "chatId": ANN, "from": ANN, "selected": ["pizza"]},
        {"pollId": "3EB0UNKNOWN", "chatId": ANN, "from": ANN, "selected": []},
    ]
    assert (await get_message(api, row.id, "3EB0P1"))["type"] == "poll"

    # Options an engine could only give as hashes are named from the stored poll.
    lunch = {"poll": {"question": "Lunch?", "options": ["Pizza", "Sushi"], "selectableCount": 2}}
    poll = MessageReceived("3EB0P2", ANN, ANN, "poll", lunch, AT)
    hashes = [hashlib.sha256(name.encode()).hexdigest() for name in ("Sushi", "Pizza")]
    await apply(api, row, poll, PollVoted("3EB0P2", ANN, ANN, [], option_hashes=hashes))
    # A hash no option has, or a poll never stored: not announced (names are the event).
    await apply(api, row, PollVoted("3EB0P2", ANN, ANN, [], option_hashes=["00" * 32]))
    await apply(api, row, PollVoted("3EB0NONE", ANN, ANN, [], option_hashes=hashes))
    votes = [e["data"] for e in await logged(api, row.id, "message.poll_vote")]
    assert votes[2:] == [
        {"pollId": "3EB0P2", "chatId": ANN, "from": ANN, "selected": ["Sushi", "Pizza"]}
    ]

    # An unknown message: stored with its raw type, announced only to who names it.
    unknown = MessageReceived("3EB0U1", ANN, ANN, "unknown", {}, AT, raw_type="someNewMessage")
    await apply(api, row, unknown)
    stored = await get_message(api, row.id, "3EB0U1")
    assert (stored["type"], stored["rawType"]) == ("unknown", "someNewMessage")
    everything = await logged(api, row.id)  # "*"
    assert [e for e in everything if e["data"].get("id") == "3EB0U1"] == []
    named = await logged(api, row.id, "message.unknown")
    assert [e["data"] for e in named] == [
        {"id": "3EB0U1", "chatId": ANN, "from": ANN, "rawType": "someNewMessage"}
    ]


async def test_a_message_replaces_its_undecryptable_placeholder(api: Api) -> None:
    """WhatsApp's retry brings a message that first arrived undecryptable under the same
    id: the real content replaces the placeholder and is announced; a second
    placeholder, or the message again, changes nothing."""
    row = await session_row(api, "alice")
    placeholder = MessageReceived("3EB0X1", ANN, ANN, UNDECRYPTABLE, {"reason": "placeholder"}, AT)
    await apply(api, row, placeholder)
    assert (await get_message(api, row.id, "3EB0X1"))["type"] == UNDECRYPTABLE
    real = text_from(ANN, "3EB0X1", "at last")
    await apply(api, row, real, placeholder, real)
    message = await get_message(api, row.id, "3EB0X1")
    assert (message["type"], message["text"]) == ("text", "at last")
    received = [e["data"] for e in await logged(api, row.id, "message.received")]
    assert [(e["type"], e.get("text")) for e in received] == [
        (UNDECRYPTABLE, None),
        ("text", "at last"),
    ]


async def test_reading_on_the_phone_and_server_refusals(api: Api) -> None:
    """A read on the phone marks inbound messages read, once; a server refusal fails a
    message that was sent, and nothing once it was delivered or read."""
    row = await session_row(api, "alice")
    await apply(api, row, text_from(ANN, "3EB0A1", "one"), text_from(ANN, "3EB0A2", "two"))
    chats = await api.request("GET", f"/api/sessions/{row.id}/chats")
    assert chats.json()["data"][0]["unreadCount"] == 2
    read = ReadBySelf(ANN, ["3EB0A1", "3EB0A2", "3EB0NOTSTORED"])
    await apply(api, row, read)
    await apply(api, row, read)  # again: already read, nothing recorded
    acks = [e["data"] for e in await logged(api, row.id, "message.ack")]
    assert acks == [
        {"id": "3EB0A1", "chatId": ANN, "status": "read"},
        {"id": "3EB0A2", "chatId": ANN, "status": "read"},
    ]
    chats = await api.request("GET", f"/api/sessions/{row.id}/chats")
    assert chats.json()["data"][0]["unreadCount"] == 0

    bob = await ready_session(api, "bob")
    refused = await send_text(api, row.id, plus(bob), "refused")
    kept = await send_text(api, row.id, plus(bob), "kept")
    await wait_sent(api, row.id, refused["id"])
    await wait_sent(api, row.id, kept["id"])
    chat = kept["chatId"]
    await apply(
        api,
        row,
        MessageAck(refused["id"], chat, "failed"),
        MessageAck(kept["id"], chat, "read", by=chat),
        MessageAck(kept["id"], chat, "failed"),  # read already: a refusal changes nothing
    )
    failed = await get_message(api, row.id, refused["id"])
    assert (failed["status"], failed["errorCode"]) == ("failed", "SERVER_REFUSED")
    assert failed["error"].startswith("SERVER_REFUSED")
    assert (await get_message(api, row.id, kept["id"]))["status"] == "read"
    acks = [e["data"] for e in await logged(api, row.id, "message.ack")]
    assert acks[2:] == [
        {
            "id": refused["id"],
            "chatId": chat,
            "status": "failed",
            "error": failed["error"],
            "errorCode": "SERVER_REFUSED",
        },
        {"id": kept["id"], "chatId": chat, "status": "read", "by": chat},
    ]


async def test_announcements_ignored_chats_and_a_failing_report(api: Api) -> None:
    """Presence, calls, chat and group changes become their events; nothing of a chat
    the session ignores; a report that fails is set aside alone, its run applied."""
    row = await session_row(api, "alice")
    await apply(
        api,
        row,
        PresenceUpdated(ANN, ANN, "composing"),
        PresenceUpdated(ANN, ANN, "unavailable", last_seen=AT),
        CallReceived("CALL1", ANN, is_video=True, is_group=False, timestamp=AT),
        ChatUpdated(ANN, ephemeral_seconds=86400),
        GroupUpdated(GROUP, "ephemeral", by=ANN, value="604800"),
    )
    events = [(e["event"], e["data"]) for e in await logged(api, row.id)]
    assert events[-5:] == [
        ("presence.update", {"chatId": ANN, "from": ANN, "presence": "composing"}),
        (
            "presence.update",
            {
                "chatId": ANN,
                "from": ANN,
                "presence": "unavailable",
                "lastSeen": "2026-12-01T09:00:00.000Z",
            },
        ),
        (
            "call.received",
            {
                "callId": "CALL1",
                "from": ANN,
                "isVideo": True,
                "isGroup": False,
                "timestamp": "2026-12-01T09:00:00.000Z",
            },
        ),
        ("chat.update", {"chatId": ANN, "ephemeralSeconds": 86400}),
        (
            "group.update",
            {
                "groupId": GROUP,
                "action": "ephemeral",
                "participants": [],
                "by": ANN,
                "value": "604800",
            },
        ),
    ]

    # A session that ignores groups hears nothing of them.
    row = await session_row(api, "quiet", config={"ignore": {"groups": True}})
    await apply(
        api,
        row,
        PresenceUpdated(GROUP, ANN, "composing"),
        GroupUpdated(GROUP, "subject", by=ANN, value="New"),
        ChatUpdated(GROUP, muted=True),
        PollVoted("3EB0P2", GROUP, ANN, ["a"]),
        MessageEdited("3EB0P3", GROUP, ANN, "x", AT),
        ReadBySelf(GROUP, ["3EB0P4"]),
    )
    names = {e["event"] for e in await logged(api, row.id)}
    assert {name for name in names if not name.startswith("session.")} == set(), names

    # A report an engine got wrong (a time that is not one) fails alone.
    broken = PresenceUpdated(ANN, ANN, "unavailable", last_seen="yesterday")  # type: ignore[arg-type]
    edit = MessageEdited("3EB0S1", ANN, ANN, "fixed", AT)
    await apply(api, row, text_from(ANN, "3EB0S1", "typo"), broken, edit)
    stored, aside = await stored_and_set_aside(api, row.id)
    assert "3EB0S1" in stored
    assert [(r.kind, r.report["presence"]) for r in aside] == [("PresenceUpdated", "unavailable")]
    assert (await get_message(api, row.id, "3EB0S1"))["text"] == "fixed"


async def test_an_edit_before_its_message_waits_for_it_even_across_a_restart(
    app_factory: AppFactory,
) -> None:
    """WhatsApp's order is not guaranteed: an edit that comes first is announced, kept,
    and given to its message when that comes (the later of two edits wins), also after
    a restart of the server."""
    async with app_factory.running(mock_ack_delay_ms=600_000) as api:
        row = await session_row(api, "early")
        first = MessageEdited("3EB0P1", ANN, ANN, "edited once", AT + timedelta(minutes=1))
        second = MessageEdited("3EB0P1", ANN, ANN, "edited twice", AT + timedelta(minutes=2))
        await apply(api, row, second)
        await apply(api, row, first)  # older: the newer edit stays
        assert len(await logged(api, row.id, "message.edited")) == 2  # both announced
        # One in the same run as its message, edit first.
        same_run = MessageEdited("3EB0P2", ANN, ANN, "fixed", AT + timedelta(minutes=1))
        await apply(api, row, same_run, text_from(ANN, "3EB0P2", "typo"))
        stored = await get_message(api, row.id, "3EB0P2")
        assert (stored["text"], [e["text"] for e in stored["edits"]]) == ("fixed", ["typo"])
    async with app_factory.running(mock_ack_delay_ms=600_000) as api:
        row = api.services.directory.get(row.id) or row
        await apply(api, row, text_from(ANN, "3EB0P1", "original"))
        message = await get_message(api, row.id, "3EB0P1")
        assert message["text"] == "edited twice"
        assert [e["text"] for e in message["edits"]] == ["original"]
        received = [
            e for e in await logged(api, row.id, "message.received") if e["data"]["id"] == "3EB0P1"
        ]
        assert received[0]["data"]["text"] == "edited twice"
        # Taken: the same message reported again changes nothing.
        await apply(api, row, text_from(ANN, "3EB0P1", "original"))
        assert (await get_message(api, row.id, "3EB0P1"))["text"] == "edited twice"


async def test_waiting_edit_ids_in_memory_follow_the_table(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Maintenance gives up an edit whose message never came, with the messages of its
    age; the id kept in memory for it went only with the process, so a long-running
    server's sets only grew. Read again once stale, they hold what the table holds."""
    row = await session_row(api, "forgotten")
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(pending_edits_module, "utcnow", lambda: clock[0])
    waiting = api.services.reports._pending_edits._waiting
    await apply(api, row, MessageEdited("3EB0F1", ANN, ANN, "never came", AT))
    assert waiting[row.id] == {"3EB0F1"}
    await api.services.maintenance.prune_messages(clock[0] + timedelta(seconds=1))
    clock[0] += timedelta(minutes=1)  # fresh: the ids are used as they are
    await apply(api, row, MessageEdited("3EB0F2", ANN, ANN, "waits", AT))
    assert waiting[row.id] == {"3EB0F1", "3EB0F2"}
    clock[0] += timedelta(days=1)  # well past the reload's interval
    await apply(api, row, MessageEdited("3EB0F3", ANN, ANN, "waits too", AT))
    assert waiting[row.id] == {"3EB0F2", "3EB0F3"}
    # What still waits is given to its message as before.
    await apply(api, row, text_from(ANN, "3EB0F2", "original"))
    assert (await get_message(api, row.id, "3EB0F2"))["text"] == "waits"
    assert waiting[row.id] == {"3EB0F3"}


async def test_a_waiting_edit_applied_in_a_run_rolled_back_is_applied_again(
    api: Api, database_kind: str
) -> None:
    """A run that fails is rolled back and applied again report by report: the id of a
    waiting edit it took must still be known then, or its row stays behind (the message
    got the edit, the table kept it until maintenance)."""
    if database_kind != "postgres":
        pytest.skip("SQLite stores an over-long value; PostgreSQL refuses it")
    row = await session_row(api, "rolledback")
    await apply(api, row, MessageEdited("3EB0R1", ANN, ANN, "edited first", AT))
    refused = dataclasses.replace(text_from(ANN, "3EB0R2", "refused"), type="x" * 40)
    await apply(api, row, text_from(ANN, "3EB0R1", "original"), refused)
    assert (await get_message(api, row.id, "3EB0R1"))["text"] == "edited first"
    async with api.services.db() as db:
        left = await db.scalar(select(func.count()).select_from(PendingEditRow))
    assert left == 0
