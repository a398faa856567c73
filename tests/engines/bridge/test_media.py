"""Inbound media from Baileys: the bridge downloads it into the engine's transfer
directory and names the file in the event; the core stores it. (The download itself:
the bridge's own test/media.test.js, through the real library.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from openwa.engines.base import MessageReceived
from openwa.engines.bridge import baileys
from openwa.engines.bridge.engine import BridgeClient, BridgeEngine
from tests.engines.proxies import SilentProxy
from tests.fixtures.app import Api, AppFactory, wait_for

PEER = "15550000002@s.whatsapp.net"
PICTURE = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)
SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"])


def upsert(message_id: str, fetched: dict[str, Any] | None) -> dict[str, Any]:
    info = {
        "key": {"remoteJid": PEER, "fromMe": False, "id": message_id},
        "message": {
            "imageMessage": {"caption": "look", "mimetype": "image/png", "fileLength": "2056"}
        },
        "messageTimestamp": 1_764_770_000,
    }
    data: dict[str, Any] = {"type": "notify", "messages": [info]}
    if fetched is not None:
        data["media"] = {message_id: fetched}
    return data


def test_the_fetched_file_or_why_not_becomes_the_messages_media() -> None:
    (got,) = baileys.translate(
        "messages.upsert", upsert("M1", {"path": "/t/in-1", "size": 7}), None
    )
    assert isinstance(got, MessageReceived)
    assert got.media is not None
    assert (got.media.path, got.media.size, got.media.mimetype) == (Path("/t/in-1"), 7, "image/png")
    assert "mediaError" not in got.content
    (failed,) = baileys.translate("messages.upsert", upsert("M2", {"error": "HTTP 404"}), None)
    assert isinstance(failed, MessageReceived)
    assert failed.media is None
    assert failed.content["mediaError"] == "download failed: HTTP 404"
    history = upsert("M3", None) | {"type": "append"}
    (old,) = baileys.translate("messages.upsert", history, None)
    assert isinstance(old, MessageReceived)
    assert old.content["mediaError"] == "not downloaded: media from a history sync"


async def media_of(api: Api, session_id: str, message_id: str) -> Any:
    response = await api.request("GET", f"/api/sessions/{session_id}/messages/{message_id}")
    return response.json()["data"] if response.status_code == 200 else None


@SQLITE_ONLY
async def test_a_downloaded_picture_is_stored_and_a_foreign_path_is_not_taken(
    app_factory: AppFactory, silent: SilentProxy
) -> None:
    async with app_factory.running() as api:
        session = await api.create_session(
            "pictures", engine="baileys", config={"proxy": silent.url}
        )
        session_id = session["id"]
        client = await wait_for(
            lambda: _client(api, session_id), lambda c: c is not None, 20, "the client"
        )
        engine = api.services.engines.get("baileys")
        assert isinstance(engine, BridgeEngine)
        downloaded = engine.transfers.path / "in-test"
        downloaded.write_bytes(PICTURE)
        frame = {"kind": "event", "name": "messages.upsert"}
        fetched = {"path": str(downloaded), "size": len(PICTURE)}
        await client.on_frame({**frame, "data": upsert("3EB0PIC1", fetched)})
        stored = await wait_for(lambda: media_of(api, session_id, "3EB0PIC1"), bool, 20, "stored")
        assert stored["type"] == "image"
        assert stored["mediaError"] is None
        response = await api.request("GET", f"/api/sessions/{session_id}/messages/3EB0PIC1/media")
        assert response.status_code == 200, response.text
        assert response.content == PICTURE
        assert not downloaded.exists()  # moved into our storage
        # A path outside the engine's transfer directory is never read.
        foreign = engine.transfers.path.parent / "elsewhere"
        foreign.write_bytes(b"secret")
        fetched = {"path": str(foreign), "size": 6}
        await client.on_frame({**frame, "data": upsert("3EB0PIC2", fetched)})
        refused = await wait_for(lambda: media_of(api, session_id, "3EB0PIC2"), bool, 20, "stored")
        assert refused["mediaError"] == "not downloaded"
        assert foreign.read_bytes() == b"secret"


async def _client(api: Api, session_id: str) -> BridgeClient | None:
    client = api.services.runtime.client(session_id)
    return client if isinstance(client, BridgeClient) else None
