"""Retention: old media leaves the store (MEDIA_RETENTION_DAYS), old messages the database
(MESSAGE_RETENTION_DAYS), newer ones stay; on local files and on S3 alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from structlog.testing import capture_logs

from openwa.db.models import MessageRow, SetAsideReportRow
from openwa.kit.clock import utcnow
from tests.fixtures.app import Api
from tests.media.conftest import MediaApps, MediaStore
from tests.media.support import (
    OUTSIDER,
    b64,
    data_of,
    download,
    error_of,
    get_message,
    inbound,
    object_key,
    plus,
    png,
    post_json,
    post_multipart,
    ready_pair,
    stored_key,
    wait_event,
    wait_sent,
)


async def age(api: Api, message_ids: list[str], days: int) -> None:
    """Move messages (on every session that has them) `days` into the past."""
    async with api.services.db() as db, db.begin():
        await db.execute(
            update(MessageRow)
            .where(MessageRow.id.in_(message_ids))
            .values(timestamp=utcnow() - timedelta(days=days))
        )


async def assert_media_pruned(api: Api, store: MediaStore, session: str, message_id: str) -> None:
    message = await get_message(api, session, message_id)
    assert message["media"].get("deleted") is True, (session, message)
    assert "url" not in message["media"]
    response = await download(api, session, message_id)
    assert response.status_code == 404, (session, response.text)


async def stored_ids(api: Api) -> set[str]:
    async with api.services.db() as db:
        return set((await db.execute(select(MessageRow.id))).scalars().all())


async def test_retention_prunes_old_media_and_messages(
    media_apps: MediaApps, store: MediaStore
) -> None:
    api = await media_apps.start(store, message_retention_days=90, media_retention_days=30)
    assert api.settings.message_retention_days == 90
    alice, bob = await ready_pair(api)
    images = {name: png() for name in ("ancient", "old", "fresh")}
    sent: dict[str, str] = {}
    for name, image in images.items():
        response = await post_multipart(
            api, "alice", image, filename=f"{name}.png", chatId=plus(bob), type="image"
        )
        sent[name] = data_of(response, 202)["id"]
    for name in ("ancient_text", "fresh_text"):
        response = await post_json(api, "alice", "text", {"chatId": plus(bob), "text": name})
        sent[name] = data_of(response, 202)["id"]
    # Inbound media from outside the mock network, too.
    media = {"base64": b64(png()), "mimetype": "image/png"}
    response = await inbound(api, "bob", **{"from": OUTSIDER, "type": "image"}, media=media)
    sent["ancient_inbound"] = data_of(response, 202)["id"]
    for name, message_id in sent.items():
        await wait_event(api, bob["id"], "message.received", id=message_id)
        if name != "ancient_inbound":
            await wait_sent(api, "alice", message_id)

    stored: dict[str, set[str]] = {}
    for name in ("ancient", "old", "fresh", "ancient_inbound"):
        stored[name] = {await stored_key(api, bob["id"], sent[name])}  # a key of its own
        if name != "ancient_inbound":
            stored[name].add(object_key(alice["id"], sent[name], "png"))

    def keys_of(name: str) -> set[str]:
        return stored[name]

    every_key = set().union(*(keys_of(n) for n in stored))
    assert store.objects() == every_key

    # 100 days: past both retentions; 40 days: past the media retention only.
    await age(api, [sent["ancient"], sent["ancient_text"], sent["ancient_inbound"]], 100)
    await age(api, [sent["old"]], 40)
    await api.services.maintenance.run_once()

    # Messages older than MESSAGE_RETENTION_DAYS are gone, on both sides; newer ones stay.
    remaining = await stored_ids(api)
    for name in ("ancient", "ancient_text", "ancient_inbound"):
        assert sent[name] not in remaining, name
    for name in ("old", "fresh", "fresh_text"):
        assert sent[name] in remaining, name
    for session in ("alice", "bob"):
        for name in ("ancient", "ancient_text"):
            error_of(
                await api.request("GET", f"/api/sessions/{session}/messages/{sent[name]}"),
                404,
                "MESSAGE_NOT_FOUND",
                (session, name),
            )
        # Fresh: all there.
        response = await download(api, session, sent["fresh"])
        assert response.status_code == 200
        assert response.content == images["fresh"]
        assert (await get_message(api, session, sent["fresh_text"]))["text"] == "fresh_text"

    # The sender's media older than MEDIA_RETENTION_DAYS left the store; the message stays
    # with its media marked deleted.
    sent_keys = {object_key(alice["id"], sent[n], "png") for n in ("ancient", "old", "fresh")}
    assert store.objects() & sent_keys == {object_key(alice["id"], sent["fresh"], "png")}
    await assert_media_pruned(api, store, "alice", sent["old"])

    # So did the recipient's (received media is stored under the recipient's own key).
    await assert_media_pruned(api, store, "bob", sent["old"])
    assert store.objects() == keys_of("fresh"), "received media outlived its retention"
    if store.kind == "local":
        for name in ("ancient", "old", "ancient_inbound"):
            for key in keys_of(name):
                assert not (store.root / key).exists(), key

    # Running again changes nothing.
    await api.services.maintenance.run_once()
    assert store.objects() == keys_of("fresh")
    assert await stored_ids(api) == remaining


async def test_a_send_scheduled_beyond_the_retention_keeps_its_media(
    media_apps: MediaApps, store: MediaStore
) -> None:
    """A scheduled send is aged from when it is due: accepted long ago and due in a
    year, its media and the message itself stay until then and a retention after."""
    api = await media_apps.start(store, message_retention_days=90, media_retention_days=30)
    alice, bob = await ready_pair(api)
    due = (utcnow() + timedelta(days=365)).isoformat()
    response = await post_multipart(api, "alice", png(), chatId=plus(bob), type="image", sendAt=due)
    message_id = data_of(response, 202)["id"]
    await age(api, [message_id], 100)  # accepted 100 days ago
    # And one sent now with a `sendAt` years past: it is as young as its acceptance.
    response = await post_multipart(
        api, "alice", png(), chatId=plus(bob), type="image", sendAt="2015-01-01T00:00:00Z"
    )
    past_id = data_of(response, 202)["id"]
    await wait_sent(api, "alice", past_id)
    await api.services.maintenance.run_once()

    assert {message_id, past_id} <= await stored_ids(api)
    assert (await download(api, "alice", past_id)).status_code == 200
    message = await get_message(api, "alice", message_id)
    assert message["status"] == "pending"
    assert "deleted" not in message["media"], message
    assert (await download(api, "alice", message_id)).status_code == 200
    assert object_key(alice["id"], message_id, "png") in store.objects()


async def test_a_file_the_storage_refuses_to_delete_holds_no_clean_up_back(
    media_apps: MediaApps, local_store: MediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One file that cannot be deleted (a bucket policy without delete, an object lock)
    made every run fail at the same rows: no message, no media and nothing after them
    was ever pruned again. Its message lets go of it (the sweep tries it later), the
    rest goes on; set-aside reports age with the messages."""
    api = await media_apps.start(local_store, message_retention_days=90, media_retention_days=30)
    alice, bob = await ready_pair(api)
    sent: list[str] = []
    for name in ("refused", "deletable"):
        response = await post_multipart(
            api, "alice", png(), filename=f"{name}.png", chatId=plus(bob), type="image"
        )
        sent.append(data_of(response, 202)["id"])
    response = await post_json(api, "alice", "text", {"chatId": plus(bob), "text": "old text"})
    sent.append(data_of(response, 202)["id"])
    for message_id in sent:
        await wait_event(api, bob["id"], "message.received", id=message_id)
        await wait_sent(api, "alice", message_id)
    await age(api, sent, 100)
    async with api.services.db() as db, db.begin():
        for days in (100, 1):
            db.add(
                SetAsideReportRow(
                    session_id=alice["id"],
                    kind="MessageReceived",
                    report={"id": f"aside {days}"},
                    error="refused",
                    created_at=utcnow() - timedelta(days=days),
                )
            )
    refused = {object_key(alice["id"], sent[0], "png"), await stored_key(api, bob["id"], sent[0])}
    storage = api.services.storage
    delete = storage.delete

    async def refusing(key: str) -> None:
        if key in refused:
            raise PermissionError(13, "Permission denied", key)
        await delete(key)

    monkeypatch.setattr(storage, "delete", refusing)
    await api.services.maintenance.run_once()

    assert not set(sent) & await stored_ids(api)
    assert local_store.objects() == refused  # left for the sweep; nothing else is
    async with api.services.db() as db:
        aside = (await db.execute(select(SetAsideReportRow.report))).scalars().all()
    assert [r["id"] for r in aside] == ["aside 1"]


async def test_a_file_two_messages_name_stays_while_the_newer_keeps_it(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    """Stored before inbound media had keys of its own, two messages whose ids differed
    only in punctuation named one file: the older one's retention deleted it under the
    newer one."""
    api = await media_apps.start(local_store, message_retention_days=90, media_retention_days=30)
    alice, bob = await ready_pair(api)
    sent = []
    for name in ("older", "newer"):
        response = await post_multipart(
            api, "alice", png(), filename=f"{name}.png", chatId=plus(bob), type="image"
        )
        sent.append(data_of(response, 202)["id"])
        await wait_sent(api, "alice", sent[-1])
    older, newer = sent
    async with api.services.db() as db, db.begin():
        row = await db.get(MessageRow, (alice["id"], older))
        assert row is not None
        assert row.media_key is not None
        shared = row.media_key
        await db.execute(
            update(MessageRow)
            .where(MessageRow.session_id == alice["id"], MessageRow.id == newer)
            .values(media_key=shared, content={**row.content})
        )
    await age(api, [older], 40)
    await api.services.maintenance.run_once()

    await assert_media_pruned(api, local_store, "alice", older)
    assert shared in local_store.objects()
    assert (await download(api, "alice", newer)).status_code == 200


async def test_a_database_away_puts_the_clean_up_off_with_one_line(
    media_apps: MediaApps, local_store: MediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step failed the same way, each logging its traceback (and waiting for its
    own connection): about ten errors every ten minutes while the database was away."""
    api = await media_apps.start(local_store)
    maintenance = api.services.maintenance
    away = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:9/away")
    try:
        dead = async_sessionmaker(away, expire_on_commit=False)
        monkeypatch.setattr(maintenance, "_db", dead)
        monkeypatch.setattr(maintenance, "_read", dead)
        with capture_logs() as logs:
            await maintenance.run_once()
    finally:
        await away.dispose()
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == [
        "maintenance_put_off"
    ]
