"""Files and directories the server creates under DATA_DIR are 0600 and 0700."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from openwa.engines.whatsmeow.store import DeviceStore
from tests.e2e.support import wait_status
from tests.fixtures.server import ServerProcess
from tests.media.support import OUTSIDER, png

pytestmark = [pytest.mark.e2e]


def modes(root: Path) -> dict[str, str]:
    """Every entry under `root` whose mode lets anyone but the owner in."""
    loose = {}
    for path in root.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            loose[str(path.relative_to(root))] = oct(mode)
    return loose


def test_data_dir_is_private_after_a_media_send(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # The default configuration: SQLite and local media, both under DATA_DIR.
    server = ServerProcess(f"sqlite+aiosqlite:///{data_dir / 'openwa.db'}", data_dir)
    server.start()
    try:
        with server.client() as client:
            created = client.post("/api/sessions", json={"name": "alice", "engine": "mock"})
            assert created.status_code == 201, created.text
            wait_status(client, "alice", "ready")
            sent = client.post(
                "/api/sessions/alice/messages/media",
                data={"chatId": OUTSIDER, "type": "image"},
                files={"file": ("photo.png", png(), "image/png")},
            )
            assert sent.status_code == 202, sent.text
            message_id = sent.json()["data"]["id"]
            stored = client.get(f"/api/sessions/alice/messages/{message_id}/media")
            assert stored.status_code == 200, stored.text
            # The download keeps the media route's own sandbox policy; the rest is added.
            assert stored.headers.get_list("content-security-policy") == [
                "sandbox; default-src 'none'"
            ]
            assert stored.headers.get_list("x-content-type-options") == ["nosniff"]
            assert stored.headers["x-frame-options"] == "DENY"
            assert stored.headers["cache-control"] == "no-store"
        names = {p.name for p in data_dir.rglob("*")}
        assert {"openwa.db", "media"} <= names, names
        assert any(p.is_file() for p in (data_dir / "media").rglob("*")), "no media stored"
        assert modes(data_dir) == {}
    finally:
        server.stop()
    assert modes(data_dir) == {}


def test_whatsmeow_device_directory_is_private(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path / "whatsmeow")
    store.location("alice")
    assert stat.S_IMODE((tmp_path / "whatsmeow").stat().st_mode) == 0o700
