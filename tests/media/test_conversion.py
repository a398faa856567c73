"""Conversions WhatsApp needs: voice notes to OGG/Opus, stickers to WebP (ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media.conftest import MediaApps, MediaStore
from tests.media.support import (
    b64,
    data_of,
    download,
    object_key,
    plus,
    png,
    post_media_json,
    post_multipart,
    ready_pair,
    require_ffmpeg,
    stored_key,
    tone,
    wait_event,
)


@pytest.mark.parametrize(("suffix", "mimetype"), [("wav", "audio/x-wav"), ("mp3", "audio/mpeg")])
async def test_voice_is_converted_to_ogg_opus(
    media_apps: MediaApps, local_store: MediaStore, tmp_path: Path, suffix: str, mimetype: str
) -> None:
    audio = tone(tmp_path, suffix)
    api = await media_apps.start(local_store)
    alice, bob = await ready_pair(api)

    sent = data_of(
        await post_multipart(
            api,
            "alice",
            audio,
            filename=f"note.{suffix}",
            content_type=mimetype,
            chatId=plus(bob),
            type="voice",
        ),
        202,
    )
    assert sent["media"]["mimetype"] == "audio/ogg"
    assert sent["media"]["size"] != len(audio)
    event = await wait_event(api, bob["id"], "message.received", id=sent["id"])
    assert event["data"]["type"] == "voice"
    assert event["data"]["media"]["mimetype"] == "audio/ogg"
    for session in ("alice", "bob"):
        response = await download(api, session, sent["id"])
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "audio/ogg"
        assert response.content.startswith(b"OggS")
        assert b"OpusHead" in response.content[:200]
        assert len(response.content) == sent["media"]["size"]
    assert object_key(alice["id"], sent["id"], "ogg") in local_store.objects()
    assert await stored_key(api, bob["id"], sent["id"]) in local_store.objects()

    # An OGG/Opus voice note is kept as it is (base64 this time).
    converted = (await download(api, "alice", sent["id"])).content
    media = {"base64": b64(converted), "mimetype": "audio/ogg"}
    again = data_of(await post_media_json(api, "alice", plus(bob), "voice", media), 202)
    assert again["media"]["size"] == len(converted)
    assert (await download(api, "alice", again["id"])).content == converted


async def test_png_sticker_becomes_webp(media_apps: MediaApps, local_store: MediaStore) -> None:
    require_ffmpeg()
    api = await media_apps.start(local_store)
    alice, bob = await ready_pair(api)
    sticker = png(64, 48)
    sent = data_of(
        await post_multipart(
            api, "alice", sticker, filename="sticker.png", chatId=plus(bob), type="sticker"
        ),
        202,
    )
    assert sent["media"]["mimetype"] == "image/webp"
    event = await wait_event(api, bob["id"], "message.received", id=sent["id"])
    assert event["data"]["type"] == "sticker"
    assert event["data"]["media"]["mimetype"] == "image/webp"
    response = await download(api, "bob", sent["id"])
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "image/webp"
    assert response.content[:4] == b"RIFF"
    assert response.content[8:12] == b"WEBP"
    assert object_key(alice["id"], sent["id"], "webp") in local_store.objects()
