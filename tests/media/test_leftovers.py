"""A media send that ends without a message leaves no file behind: not in the staging
folder (`DATA_DIR/tmp`), not in storage, where nothing would ever remove it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fixtures.app import Api
from tests.media.conftest import MediaApps, MediaStore
from tests.media.support import (
    OUTSIDER,
    b64,
    data_of,
    error_of,
    inbound,
    media_path,
    png,
    post_media_json,
    post_multipart,
    ready_session,
)
from tests.media.test_limits import leftovers


def assert_nothing_left(api: Api, store: MediaStore) -> None:
    assert leftovers(api) == []
    assert store.objects() == set()


async def test_a_refused_chat_id_stages_nothing(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    image = png()
    for chat_id in ("abc", "123@g.us"):
        error_of(
            await post_multipart(api, "alice", image, chatId=chat_id, type="image"),
            400,
            "INVALID_CHAT_ID",
            chat_id,
        )
        media = {"base64": b64(image), "mimetype": "image/png"}
        error_of(
            await post_media_json(api, "alice", chat_id, "sticker", media),
            400,
            "INVALID_CHAT_ID",
            chat_id,
        )
    assert_nothing_left(api, local_store)


async def test_media_for_a_session_not_ready_stages_nothing(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    data_of(await api.request("POST", "/api/sessions/alice/stop"))
    media = {"base64": b64(png()), "mimetype": "image/png"}
    error_of(
        await inbound(api, "alice", **{"from": OUTSIDER, "type": "image"}, media=media),
        409,
        "SESSION_NOT_READY",
    )
    error_of(
        await post_media_json(api, "alice", OUTSIDER, "image", media), 409, "SESSION_NOT_READY"
    )
    assert_nothing_left(api, local_store)


async def test_sends_at_once_with_one_idempotency_key_store_one_file(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    image = png()

    async def send() -> str:
        response = await api.request(
            "POST",
            media_path("alice"),
            headers={"Idempotency-Key": "same-photo"},
            data={"chatId": OUTSIDER, "type": "image"},
            files={"file": ("photo.png", image, "image/png")},
        )
        message_id: str = data_of(response, 202)["id"]
        return message_id

    ids = await asyncio.gather(*(send() for _ in range(8)))
    assert len(set(ids)) == 1
    assert leftovers(api) == []
    assert len(local_store.objects()) == 1, local_store.objects()


async def test_a_send_whose_accept_fails_leaves_no_file(
    media_apps: MediaApps, store: MediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its bytes are stored before its rows are written: an accept that fails in any way
    (here its write; a value the database refused was the case seen) removes them, not
    only one that clashes on an idempotency key."""
    api = await media_apps.start(store)
    await ready_session(api, "alice")

    async def failing(work: Any) -> Any:
        raise RuntimeError("the accept failed")

    monkeypatch.setattr(api.services.messages._accepts, "run", failing)
    image = png()
    error_of(
        await post_multipart(api, "alice", image, chatId=OUTSIDER, type="image"),
        500,
        "INTERNAL_ERROR",
    )
    media = {"base64": b64(image), "mimetype": "image/png"}
    error_of(await post_media_json(api, "alice", OUTSIDER, "image", media), 500, "INTERNAL_ERROR")
    print("stored after two failed accepts:", store.objects())
    assert_nothing_left(api, store)
