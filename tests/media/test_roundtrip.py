"""Media round trips between two mock sessions, on local files and on a real S3 (radosgw).

Alice sends, Bob receives (`message.received`), Bob's webhook links to the media, and
downloading the link gives the same bytes and content type; on S3 with `S3_PRESIGN` the
link is a presigned URL that radosgw serves without our key and refuses when tampered.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from tests.fixtures.app import Api, wait_for
from tests.media.conftest import Loopback, MediaApps, MediaStore
from tests.media.support import (
    MESSAGE_ID_RE,
    OUTSIDER,
    b64,
    data_of,
    download,
    error_of,
    get_message,
    inbound,
    jid,
    object_key,
    plus,
    png,
    post_media_json,
    post_multipart,
    ready_pair,
    ready_session,
    stored_key,
    wait_event,
)


async def register_hook(api: Api, session: str, loopback: Loopback) -> dict[str, Any]:
    body = {"url": loopback.hook_url, "events": ["message.received"]}
    response = await api.request("POST", f"/api/sessions/{session}/webhooks", json=body)
    hook: dict[str, Any] = data_of(response, 201)
    return hook


async def hook_for(loopback: Loopback, message_id: str) -> dict[str, Any]:
    """The webhook delivery (the event envelope) of `message.received` for `message_id`."""

    def find(hooks: list[Any]) -> dict[str, Any] | None:
        for hook in hooks:
            payload: dict[str, Any] = orjson.loads(hook.body)
            if payload["event"] == "message.received" and payload["data"]["id"] == message_id:
                return payload
        return None

    async def snapshot() -> list[Any]:
        return list(loopback.hooks)

    hooks = await wait_for(snapshot, lambda h: find(h) is not None, 15, "the webhook delivery")
    found = find(hooks)
    assert found is not None
    return found


def route_url(api: Api, session_id: str, message_id: str) -> str:
    base = api.settings.resolved_public_url
    return f"{base}/api/sessions/{session_id}/messages/{message_id}/media"


async def assert_downloads(
    api: Api, session: str, message_id: str, content: bytes, mimetype: str
) -> None:
    response = await download(api, session, message_id)
    assert response.status_code == 200, response.text
    assert response.content == content
    assert response.headers["content-type"].split(";")[0] == mimetype
    assert int(response.headers["content-length"]) == len(content)


async def test_multipart_image_round_trip(
    media_apps: MediaApps, store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(store)
    alice, bob = await ready_pair(api)
    await register_hook(api, "bob", loopback)
    image = png()

    response = await post_multipart(
        api, "alice", image, filename="holiday.png", chatId=plus(bob), type="image", caption="look"
    )
    sent = data_of(response, 202)
    message_id = sent["id"]
    assert MESSAGE_ID_RE.fullmatch(message_id), sent
    assert sent["status"] == "pending"
    assert sent["type"] == "image"
    assert sent["caption"] == "look"
    assert sent["media"]["mimetype"] == "image/png"
    assert sent["media"]["size"] == len(image)
    assert sent["media"]["filename"] == "holiday.png"

    # Bob receives it, with the media linked.
    event = await wait_event(api, bob["id"], "message.received", id=message_id)
    data = event["data"]
    assert data["type"] == "image"
    assert data["caption"] == "look"
    assert data["fromMe"] is False
    assert data["from"] == jid(alice)
    link = route_url(api, bob["id"], message_id)
    assert data["media"] == {
        "url": link,
        "mimetype": "image/png",
        "size": len(image),
        "filename": "holiday.png",
    }

    # Bob's webhook carries the same link.
    delivered = await hook_for(loopback, message_id)
    assert delivered["sessionId"] == bob["id"]
    assert delivered["data"]["media"]["url"] == link

    # The link (with the key) gives the same bytes and type; without a key it is refused.
    response = await api.request("GET", urlsplit(link).path)
    assert response.status_code == 200, response.text
    assert response.content == image
    assert response.headers["content-type"].split(";")[0] == "image/png"
    assert "holiday.png" in response.headers["content-disposition"]
    error_of(await download(api, "bob", message_id, key=None), 401, "UNAUTHORIZED")
    await assert_downloads(api, "bob", message_id, image, "image/png")
    await assert_downloads(api, "alice", message_id, image, "image/png")

    # Each side keeps its own object under a server-made key.
    expected = {
        object_key(alice["id"], message_id, "png"),
        await stored_key(api, bob["id"], message_id),
    }
    assert store.objects() == expected
    for key in expected:
        assert store.read(key) == image


async def test_presigned_url_on_s3(
    media_apps: MediaApps, s3_store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(s3_store, s3_presign=True)
    _, bob = await ready_pair(api)
    await register_hook(api, "bob", loopback)
    image = png()
    sent = data_of(await post_multipart(api, "alice", image, chatId=plus(bob), type="image"), 202)
    message_id = sent["id"]

    event = await wait_event(api, bob["id"], "message.received", id=message_id)
    url = event["data"]["media"]["url"]
    assert s3_store.s3 is not None
    key = await stored_key(api, bob["id"], message_id)
    assert url.startswith(f"{s3_store.s3.endpoint}/{s3_store.bucket}/{key}?"), url
    query = dict(parse_qsl(urlsplit(url).query))
    assert "X-Amz-Signature" in query, url
    delivered = await hook_for(loopback, message_id)
    assert delivered["data"]["media"]["url"] == url

    async with httpx.AsyncClient(timeout=10) as http:
        # Straight from radosgw, without any API key.
        response = await http.get(url)
        assert response.status_code == 200, response.text
        assert response.content == image
        assert response.headers["content-type"] == "image/png"

        # One character of the signature changed: refused by radosgw.
        signature = query["X-Amz-Signature"]
        flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        tampered = {**query, "X-Amz-Signature": flipped}
        parts = urlsplit(url)
        bad = urlunsplit(parts._replace(query=urlencode(tampered)))
        assert bad != url
        response = await http.get(bad)
        assert response.status_code == 403, response.text
        assert image not in response.content

        # The signature of Bob's object does not open another key, nor does no signature.
        other = url.replace(f"/{key}?", f"/{sent['sessionId']}/{message_id}.png?")
        assert (await http.get(other)).status_code == 403
        unsigned = urlunsplit(parts._replace(query=""))
        assert (await http.get(unsigned)).status_code == 403

    # The API route works too.
    response = await download(api, "bob", message_id)
    assert response.status_code == 200
    assert response.content == image


async def test_json_base64_round_trip(media_apps: MediaApps, store: MediaStore) -> None:
    api = await media_apps.start(store)
    alice, bob = await ready_pair(api)
    image = png()
    media = {"base64": b64(image), "mimetype": "image/png", "filename": "b64.png"}
    sent = data_of(await post_media_json(api, "alice", plus(bob), "image", media), 202)
    event = await wait_event(api, bob["id"], "message.received", id=sent["id"])
    assert event["data"]["media"]["mimetype"] == "image/png"
    assert event["data"]["media"]["filename"] == "b64.png"
    await assert_downloads(api, "bob", sent["id"], image, "image/png")

    # A data: URL is base64 too.
    image2 = png()
    media = {"base64": "data:image/png;base64," + b64(image2), "mimetype": "image/png"}
    sent2 = data_of(await post_media_json(api, "alice", plus(bob), "image", media), 202)
    await wait_event(api, bob["id"], "message.received", id=sent2["id"])
    await assert_downloads(api, "bob", sent2["id"], image2, "image/png")
    assert store.objects() == {
        object_key(alice["id"], sent["id"], "png"),
        object_key(alice["id"], sent2["id"], "png"),
        await stored_key(api, bob["id"], sent["id"]),
        await stored_key(api, bob["id"], sent2["id"]),
    }


async def test_json_url_round_trip(
    media_apps: MediaApps, store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(store)
    _, bob = await ready_pair(api)
    image = png()
    url = loopback.serve("picture.png", image, "image/png")
    sent = data_of(await post_media_json(api, "alice", plus(bob), "image", {"url": url}), 202)
    assert loopback.fetched == ["picture.png"]
    assert sent["media"]["filename"] == "picture.png"
    event = await wait_event(api, bob["id"], "message.received", id=sent["id"])
    assert event["data"]["media"]["size"] == len(image)
    await assert_downloads(api, "bob", sent["id"], image, "image/png")


async def test_mock_inbound_media_is_stored(
    media_apps: MediaApps, store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(store)
    bob = await ready_session(api, "bob")
    image = png()
    media = {"base64": b64(image), "mimetype": "image/png", "filename": "in.png"}
    result = data_of(
        await inbound(api, "bob", **{"from": OUTSIDER, "type": "image"}, media=media), 202
    )
    event = await wait_event(api, bob["id"], "message.received", id=result["id"])
    assert event["data"]["type"] == "image"
    assert event["data"]["media"]["url"] == route_url(api, bob["id"], result["id"])
    assert event["data"]["media"]["filename"] == "in.png"
    await assert_downloads(api, "bob", result["id"], image, "image/png")

    # From a URL as well.
    image2 = png()
    url = loopback.serve("inbound.png", image2, "image/png")
    result2 = data_of(
        await inbound(api, "bob", **{"from": OUTSIDER, "type": "image"}, media={"url": url}), 202
    )
    await wait_event(api, bob["id"], "message.received", id=result2["id"])
    await assert_downloads(api, "bob", result2["id"], image2, "image/png")
    assert store.objects() == {
        await stored_key(api, bob["id"], result["id"]),
        await stored_key(api, bob["id"], result2["id"]),
    }


async def test_a_media_link_is_the_same_in_rest_events_and_webhooks(
    media_apps: MediaApps, store: MediaStore, loopback: Loopback
) -> None:
    """One builder links media for REST and for events: the message read back, its
    `message.received` event, its webhook payload and the chat's history all point at
    the same URL (and the sender's side too, from the 202 on)."""
    api = await media_apps.start(store)
    alice, bob = await ready_pair(api)
    await register_hook(api, "bob", loopback)
    image = png()
    sent = data_of(
        await post_multipart(
            api, "alice", image, filename="same.png", chatId=plus(bob), type="image"
        ),
        202,
    )
    message_id = sent["id"]
    received = await wait_event(api, bob["id"], "message.received", id=message_id)
    delivered = await hook_for(loopback, message_id)
    read_back = await get_message(api, "bob", message_id)
    history = data_of(await api.request("GET", f"/api/sessions/bob/chats/{jid(alice)}/messages"))
    expected = {
        "url": route_url(api, bob["id"], message_id),
        "mimetype": "image/png",
        "size": len(image),
        "filename": "same.png",
    }
    assert read_back["media"] == expected
    assert received["data"]["media"] == expected
    assert delivered["data"]["media"] == expected
    assert [m["media"] for m in history if m["id"] == message_id] == [expected]

    # The sender's copy: its 202, its `message.sent` and the message read back.
    mine = {**expected, "url": route_url(api, alice["id"], message_id)}
    assert sent["media"] == mine
    announced = await wait_event(api, alice["id"], "message.sent", id=message_id)
    assert announced["data"]["media"] == mine
    assert (await get_message(api, "alice", message_id))["media"] == mine


async def test_presigned_links_serve_what_a_browser_might_run_as_an_attachment(
    media_apps: MediaApps, s3_store: MediaStore, loopback: Loopback
) -> None:
    """A presigned link bypasses the media route's headers: an HTML document comes
    straight from the bucket as an opaque attachment, an image as itself."""
    api = await media_apps.start(s3_store, s3_presign=True)
    _, bob = await ready_pair(api)
    page = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
    sent = {
        "page": data_of(
            await post_multipart(
                api,
                "alice",
                page,
                filename="page.html",
                content_type="text/html",
                chatId=plus(bob),
                type="document",
            ),
            202,
        ),
        "image": data_of(
            await post_multipart(api, "alice", png(), chatId=plus(bob), type="image"), 202
        ),
    }
    async with httpx.AsyncClient(timeout=10) as http:
        for name, message in sent.items():
            event = await wait_event(api, bob["id"], "message.received", id=message["id"])
            response = await http.get(event["data"]["media"]["url"])
            assert response.status_code == 200, response.text
            if name == "page":
                assert response.headers["content-type"] == "application/octet-stream"
                assert response.headers["content-disposition"] == "attachment"
                assert response.content == page
            else:
                assert response.headers["content-type"] == "image/png"
                assert "content-disposition" not in response.headers
    # The message keeps its real type.
    assert event["data"]["media"]["mimetype"] == "image/png"
