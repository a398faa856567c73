"""Size limits (413) and types (415) of media, by upload, base64 and URL alike."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fixtures.app import Api
from tests.media.conftest import Loopback, MediaApps, MediaStore
from tests.media.support import (
    OUTSIDER,
    b64,
    data_of,
    download,
    error_of,
    inbound,
    not_an_image,
    png,
    post_media_json,
    post_multipart,
    ready_session,
    wait_sent,
)

LIMIT = 4096


def leftovers(api: Api) -> list[Path]:
    """Staging files left in DATA_DIR/tmp (there should be none after any answer)."""
    tmp = api.settings.data_dir / "tmp"
    return [p for p in tmp.rglob("*") if p.is_file()] if tmp.exists() else []


async def test_media_over_max_media_bytes_is_413(
    media_apps: MediaApps, local_store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(local_store, max_media_bytes=LIMIT)
    await ready_session(api, "alice")
    over = os.urandom(LIMIT + 1)
    at = os.urandom(LIMIT)
    fields = {"chatId": OUTSIDER, "type": "document"}

    # multipart
    response = await post_multipart(
        api, "alice", over, filename="big.bin", content_type="application/octet-stream", **fields
    )
    error = error_of(response, 413, "PAYLOAD_TOO_LARGE", "multipart")
    assert error["details"]["maxBytes"] == LIMIT
    # base64
    media = {"base64": b64(over), "mimetype": "application/octet-stream"}
    error_of(
        await post_media_json(api, "alice", OUTSIDER, "document", media),
        413,
        "PAYLOAD_TOO_LARGE",
        "base64",
    )
    # URL
    url = loopback.serve("big.bin", over, "application/octet-stream")
    error_of(
        await post_media_json(api, "alice", OUTSIDER, "document", {"url": url}),
        413,
        "PAYLOAD_TOO_LARGE",
        "url",
    )
    # mock/inbound from a URL too
    error_of(
        await inbound(api, "alice", **{"from": OUTSIDER, "type": "document"}, media={"url": url}),
        413,
        "PAYLOAD_TOO_LARGE",
        "inbound url",
    )
    assert local_store.objects() == set()
    assert leftovers(api) == []

    # Exactly at the limit is accepted, each way.
    ids = [
        data_of(
            await post_multipart(
                api,
                "alice",
                at,
                filename="at.bin",
                content_type="application/octet-stream",
                **fields,
            ),
            202,
        )["id"],
        data_of(
            await post_media_json(
                api,
                "alice",
                OUTSIDER,
                "document",
                {"base64": b64(at), "mimetype": "application/octet-stream"},
            ),
            202,
        )["id"],
        data_of(
            await post_media_json(
                api,
                "alice",
                OUTSIDER,
                "document",
                {"url": loopback.serve("at.bin", at, "application/octet-stream")},
            ),
            202,
        )["id"],
    ]
    for message_id in ids:
        response = await download(api, "alice", message_id)
        assert response.status_code == 200
        assert response.content == at
    assert len(local_store.objects()) == 3
    assert leftovers(api) == []


async def test_body_far_over_the_limit_is_413_before_reading_it(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store, max_media_bytes=LIMIT)
    await ready_session(api, "alice")
    # Over the media route's own body limit (about 4/3 of MAX_MEDIA_BYTES + 1 MiB).
    huge = os.urandom(LIMIT * 2 + 2 * 1024 * 1024)
    response = await post_multipart(
        api,
        "alice",
        huge,
        filename="huge.bin",
        content_type="application/octet-stream",
        chatId=OUTSIDER,
        type="document",
    )
    error_of(response, 413, "PAYLOAD_TOO_LARGE")
    assert leftovers(api) == []


async def test_bytes_that_are_not_an_image_are_415(
    media_apps: MediaApps, local_store: MediaStore, loopback: Loopback
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    text = not_an_image()

    response = await post_multipart(
        api,
        "alice",
        text,
        filename="fake.png",
        content_type="image/png",
        chatId=OUTSIDER,
        type="image",
    )
    error = error_of(response, 415, "UNSUPPORTED_MEDIA_TYPE", "multipart")
    assert error["details"]["claimed"] == "image/png"
    media = {"base64": b64(text), "mimetype": "image/png", "filename": "fake.png"}
    error_of(
        await post_media_json(api, "alice", OUTSIDER, "image", media),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "base64",
    )
    url = loopback.serve("fake.png", text, "image/png")
    error_of(
        await post_media_json(api, "alice", OUTSIDER, "image", {"url": url}),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "url",
    )
    # A real image is not a video, nor a voice note; a PNG is not a JPEG-only type either.
    image = png()
    for type_ in ("video", "audio", "voice"):
        error_of(
            await post_multipart(api, "alice", image, chatId=OUTSIDER, type=type_),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            type_,
        )
    assert local_store.objects() == set()
    assert leftovers(api) == []


async def test_a_document_may_be_of_any_type(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    cases = [
        # (bytes, claimed type, file name, stored type)
        (
            os.urandom(700),
            "application/x-openwa-custom",
            "data.custom",
            "application/x-openwa-custom",
        ),
        (not_an_image(), "text/plain", "notes.txt", "text/plain"),
        (png(), "application/octet-stream", "picture.png", "image/png"),  # the bytes say PNG
        (
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
            "application/pdf",
            "a.pdf",
            "application/pdf",
        ),
    ]
    for content, claimed, filename, stored in cases:
        response = await post_multipart(
            api,
            "alice",
            content,
            filename=filename,
            content_type=claimed,
            chatId=OUTSIDER,
            type="document",
        )
        sent = data_of(response, 202)
        assert sent["type"] == "document"
        assert sent["media"]["filename"] == filename
        assert sent["media"]["mimetype"] == stored, (filename, sent)
        await wait_sent(api, "alice", sent["id"])
        got = await download(api, "alice", sent["id"])
        assert got.status_code == 200
        assert got.content == content
        assert got.headers["content-type"].split(";")[0] == stored
        assert filename in got.headers["content-disposition"]
    # The same as JSON (base64), with a type nobody knows.
    content = os.urandom(300)
    media = {"base64": b64(content), "mimetype": "application/vnd.example+zz", "filename": "x.zz"}
    sent = data_of(await post_media_json(api, "alice", OUTSIDER, "document", media), 202)
    assert sent["media"]["mimetype"] == "application/vnd.example+zz"
    got = await download(api, "alice", sent["id"])
    assert got.content == content
    assert got.headers["content-type"].split(";")[0] == "application/vnd.example+zz"


async def test_empty_media_is_refused(media_apps: MediaApps, local_store: MediaStore) -> None:
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    response = await post_multipart(
        api, "alice", b"", filename="empty.png", chatId=OUTSIDER, type="document"
    )
    error_of(response, 400, "VALIDATION_ERROR")
    # multipart without a file part
    boundary = "openwa-no-file"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="chatId"\r\n\r\n{OUTSIDER}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\nimage\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    response = await api.request(
        "POST",
        "/api/sessions/alice/messages/media",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    error_of(response, 400, "VALIDATION_ERROR")
    response = await api.request(
        "POST",
        "/api/sessions/alice/messages/media",
        content=b"chatId=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    error_of(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_refused_sends_leave_nothing_in_the_store(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    """A send refused after its media was read (session stopped: 409) stores nothing, or the
    object would stay for ever: no message row points at it, so retention never finds it."""
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    data_of(await api.request("POST", "/api/sessions/alice/stop"))
    await api.wait_status("alice", "stopped")
    response = await post_multipart(api, "alice", png(), chatId=OUTSIDER, type="image")
    error_of(response, 409, "SESSION_NOT_READY")
    media = {"base64": b64(png()), "mimetype": "image/png"}
    error_of(
        await post_media_json(api, "alice", OUTSIDER, "image", media), 409, "SESSION_NOT_READY"
    )
    assert leftovers(api) == []
    assert local_store.objects() == set()


async def test_a_text_field_that_is_not_utf8_is_refused(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    """Starlette read such a field as Latin-1: the caption `a\\xff\\xfeb` was stored as
    `aÿþb`, where a JSON body with invalid UTF-8 is refused."""
    api = await media_apps.start(local_store)
    await ready_session(api, "alice")
    boundary = "openwa-latin"

    def field(name: str, value: bytes) -> bytes:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        return head.encode() + value + b"\r\n"

    body = (
        field("chatId", OUTSIDER.encode())
        + field("type", b"document")
        + field("caption", b"a\xff\xfeb")
        + f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        + b"Content-Type: text/plain\r\n\r\nhello\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    response = await api.request(
        "POST",
        "/api/sessions/alice/messages/media",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    error = error_of(response, 400, "VALIDATION_ERROR")
    assert "caption" in str(error["details"]), error
    assert local_store.objects() == set()
