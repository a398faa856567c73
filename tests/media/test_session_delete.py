"""A deleted session's media goes with it, on local files and on a real S3 (radosgw):
what it sent and received stays nowhere once the session is gone, and the other
sessions' media is untouched."""

from __future__ import annotations

from tests.media.conftest import MediaApps, MediaStore
from tests.media.support import (
    data_of,
    image_exchanged,
    object_key,
    plus,
    png,
    post_multipart,
    ready_pair,
    stored_key,
    wait_event,
    wait_sent,
)


async def test_a_deleted_sessions_media_is_deleted(
    media_apps: MediaApps, store: MediaStore
) -> None:
    api = await media_apps.start(store)
    alice, bob, message_id = await image_exchanged(api)
    # A name under the session's prefix of another kind (an engine's profile) goes too;
    # one that only begins with its id does not.
    await api.services.storage.put(f"{bob}/webjs_profile.zip", b"profile", "application/zip")
    await api.services.storage.put(f"{bob}x/other.png", b"other", "image/png")
    assert await stored_key(api, bob, message_id) in store.objects()

    assert (await api.request("DELETE", f"/api/sessions/{bob}")).status_code == 200

    assert store.objects() == {object_key(alice, message_id, "png"), f"{bob}x/other.png"}


async def test_media_whose_sender_was_deleted_arrives_without_it(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    """The mock hands a recipient its sender's stored media to copy; one that comes
    online after the sender (and its media) was deleted stores the message without it,
    and nothing else it was handed is lost."""
    api = await media_apps.start(local_store)
    alice, bob = await ready_pair(api)
    data_of(await api.request("POST", "/api/sessions/bob/stop"))
    image = data_of(await post_multipart(api, "alice", png(), chatId=plus(bob), type="image"), 202)
    text = data_of(
        await api.request(
            "POST", "/api/sessions/alice/messages/text", json={"chatId": plus(bob), "text": "hi"}
        ),
        202,
    )
    for sent in (image, text):
        await wait_sent(api, "alice", sent["id"])
    assert (await api.request("DELETE", f"/api/sessions/{alice['id']}")).status_code == 200

    data_of(await api.request("POST", "/api/sessions/bob/start"))
    received = await wait_event(api, bob["id"], "message.received", id=image["id"])
    assert received["data"]["mediaError"] == "not available"
    assert received["data"].get("media") is None
    await wait_event(api, bob["id"], "message.received", id=text["id"])
    assert local_store.objects() == set()
