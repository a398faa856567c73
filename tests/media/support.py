"""Helpers of the media tests (not a test module): media bytes, requests, waiting."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from openwa.db.models import MessageRow
from tests.fixtures.app import ADMIN_KEY, Api, wait_for

MESSAGE_ID_RE = re.compile(r"^3EB0[0-9A-F]{20}$")
# The only object names the store may hold: `{sessionId}/{stem}.{ext}` (a send's media
# under our message id, inbound media under `in_` and a ULID, whatsapp-web.js' profile).
STORE_KEY_RE = re.compile(r"^ses_[0-9A-HJKMNP-TV-Z]{26}/[A-Za-z0-9_]{1,128}\.[a-z0-9]{1,8}$")
OUTSIDER = "+1 555 0100 200"  # a number outside the mock network: sends go nowhere
SENT = ("sent", "delivered", "read", "played")


# ---------------------------------------------------------------------------- media bytes


def png(width: int = 4, height: int = 4, pixel: Callable[[int, int], bytes] | None = None) -> bytes:
    """A valid RGB PNG: random pixels (so every call gives other bytes), or each one's
    three bytes from `pixel(x, y)` (a picture to look at)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    def row(y: int) -> bytes:
        if pixel is None:
            return os.urandom(3 * width)
        return b"".join(pixel(x, y) for x in range(width))

    rows = b"".join(b"\x00" + row(y) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def not_an_image(size: int = 600) -> bytes:
    """Bytes no sniffer takes for an image (plain text)."""
    return (b"this is plain text, not an image at all. " * (size // 40 + 1))[:size]


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


def require_ffmpeg() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        message = "ffmpeg is not installed (`apt-get install -y --no-install-recommends ffmpeg`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must run the conversion cases", pytrace=False)
        pytest.skip(message)
    return ffmpeg


def tone(directory: Path, suffix: str) -> bytes:
    """One second of a 440 Hz sine, made by ffmpeg, as `.wav` or `.mp3`."""
    ffmpeg = require_ffmpeg()
    out = directory / f"tone-{secrets.token_hex(4)}.{suffix}"
    subprocess.run(
        [
            ffmpeg,
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
            str(out),
        ],
        check=True,
        timeout=60,
    )
    return out.read_bytes()


# ---------------------------------------------------------------------------- envelopes


def data_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]


def error_of(response: httpx.Response, status: int, code: str, case: object = None) -> Any:
    assert response.status_code == status, (case, response.status_code, response.text)
    body = response.json()
    assert body["success"] is False, (case, body)
    assert body["error"]["code"] == code, (case, body)
    return body["error"]


# ---------------------------------------------------------------------------- sessions


async def ready_session(api: Api, name: str) -> dict[str, Any]:
    await api.create_session(name, engine="mock")
    session = await api.wait_status(name, "ready")
    assert session["phoneNumber"], session
    return session


async def ready_pair(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    a, b = await asyncio.gather(ready_session(api, "alice"), ready_session(api, "bob"))
    return a, b


async def image_exchanged(api: Api) -> tuple[str, str, str]:
    """Alice sends Bob an image: each side stores its copy. Their ids, the message's."""
    alice, bob = await ready_pair(api)
    sent = data_of(await post_multipart(api, "alice", png(), chatId=plus(bob), type="image"), 202)
    await wait_event(api, bob["id"], "message.received", id=sent["id"])
    return alice["id"], bob["id"], sent["id"]


def plus(session: dict[str, Any]) -> str:
    return "+" + str(session["phoneNumber"])


def jid(session: dict[str, Any]) -> str:
    return str(session["phoneNumber"]) + "@s.whatsapp.net"


# ---------------------------------------------------------------------------- sends


def media_path(session: str) -> str:
    return f"/api/sessions/{session}/messages/media"


async def post_multipart(
    api: Api,
    session: str,
    content: bytes,
    *,
    filename: str = "photo.png",
    content_type: str = "image/png",
    key: str | None = ADMIN_KEY,
    **fields: str,
) -> httpx.Response:
    """A multipart send the way a client library makes one (httpx `files=`)."""
    return await api.request(
        "POST",
        media_path(session),
        key=key,
        data=fields,
        files={"file": (filename, content, content_type)},
    )


def raw_multipart(
    fields: dict[str, str], filename: bytes, content: bytes, content_type: str = "image/png"
) -> tuple[bytes, str]:
    """A multipart body made by hand, with the file name's bytes exactly as given."""
    boundary = "openwa-" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    parts.append(
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + filename
        + b'"\r\n'
        + f"Content-Type: {content_type}\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def post_raw_multipart(
    api: Api, session: str, fields: dict[str, str], filename: bytes, content: bytes
) -> httpx.Response:
    body, content_type = raw_multipart(fields, filename, content)
    return await api.request(
        "POST", media_path(session), content=body, headers={"Content-Type": content_type}
    )


async def post_media_json(
    api: Api, session: str, chat_id: str, type_: str, media: dict[str, Any], **extra: Any
) -> httpx.Response:
    body = {"chatId": chat_id, "type": type_, "media": media, **extra}
    return await api.request("POST", media_path(session), json=body)


async def post_json(api: Api, session: str, kind: str, body: dict[str, Any]) -> httpx.Response:
    return await api.request("POST", f"/api/sessions/{session}/messages/{kind}", json=body)


async def inbound(api: Api, session: str, **body: Any) -> httpx.Response:
    return await api.request("POST", f"/api/sessions/{session}/mock/inbound", json=body)


# ---------------------------------------------------------------------------- reading


async def get_message(api: Api, session: str, message_id: str) -> Any:
    return data_of(await api.request("GET", f"/api/sessions/{session}/messages/{message_id}"))


async def download(
    api: Api, session: str, message_id: str, key: str | None = ADMIN_KEY
) -> httpx.Response:
    return await api.request("GET", f"/api/sessions/{session}/messages/{message_id}/media", key=key)


async def wait_sent(api: Api, session: str, message_id: str, timeout: float = 15.0) -> Any:
    return await wait_for(
        lambda: get_message(api, session, message_id),
        lambda m: m["status"] in SENT,
        timeout,
        f"message {message_id} sent",
    )


async def events(api: Api, session: str, event: str) -> list[dict[str, Any]]:
    response = await api.request(
        "GET", "/api/events", params={"sessions": session, "events": event, "limit": 1000}
    )
    items: list[dict[str, Any]] = data_of(response)["events"]
    return items


async def wait_event(
    api: Api, session: str, event: str, timeout: float = 15.0, **match: Any
) -> dict[str, Any]:
    """The first logged `event` of `session` whose data has every `match` item."""

    def found(items: list[dict[str, Any]]) -> bool:
        return any(all(e["data"].get(k) == v for k, v in match.items()) for e in items)

    items = await wait_for(
        lambda: events(api, session, event), found, timeout, f"{event} {match} at {session}"
    )
    return next(e for e in items if all(e["data"].get(k) == v for k, v in match.items()))


def object_key(session_id: str, message_id: str, ext: str) -> str:
    """Where a send's media is kept (inbound media has a key of its own: `stored_key`)."""
    return f"{session_id}/{message_id}.{ext}"


async def stored_key(api: Api, session_id: str, message_id: str) -> str:
    """Where the message's media is kept, as its row says (inbound media is stored under
    a key made when it came, not from the message's id, which its sender chose)."""
    async with api.services.db() as db:
        row = await db.get(MessageRow, (session_id, message_id))
    assert row is not None, (session_id, message_id)
    assert row.media_key is not None, (session_id, message_id)
    assert row.media_key.startswith(f"{session_id}/in_"), row.media_key
    return row.media_key
