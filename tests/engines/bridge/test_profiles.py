"""whatsapp-web.js' saved browser profile (its auth state) in our storage: sealed under
ENCRYPTION_KEY, handed back to the bridge at the next start, gone with the session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from openwa.engines.bridge.engine import BridgeClient, BridgeEngine
from openwa.engines.bridge.profiles import ProfileStore
from openwa.kit.cipher import Cipher, generate_key
from openwa.storage.object_store import ObjectStorage
from tests.engines.proxies import SilentProxy
from tests.fixtures.app import AppFactory, wait_for

ZIP = b"PK\x03\x04" + os.urandom(4096)  # what RemoteAuth writes: a zip of the profile
SQLITE_ONLY = pytest.mark.parametrize("database_kind", ["sqlite"])


async def stored(storage: ObjectStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.stream(key)])


async def test_a_profile_is_kept_sealed_and_comes_back_whole(tmp_path: Path) -> None:
    storage = ObjectStorage.local(tmp_path / "media")
    cipher = Cipher.from_text(generate_key())
    profiles = ProfileStore(storage, cipher)
    zipped = tmp_path / "from-bridge.zip"
    zipped.write_bytes(ZIP)
    await profiles.save("ses_1", zipped)
    assert not zipped.exists()  # taken over
    kept = await stored(storage, ProfileStore.key("ses_1"))
    assert ZIP[:64] not in kept  # sealed, not the zip
    back = await profiles.load("ses_1", tmp_path)
    assert back is not None
    assert back.read_bytes() == ZIP
    assert oct(back.stat().st_mode & 0o777) == "0o600"
    # Without the key, a sealed profile is refused, never handed on as garbage.
    with pytest.raises(ValueError, match="ENCRYPTION_KEY"):
        await ProfileStore(storage, None).load("ses_1", tmp_path)
    await profiles.delete("ses_1")
    assert await profiles.load("ses_1", tmp_path) is None
    await profiles.delete("ses_1")  # twice: nothing to delete is fine


async def test_a_save_the_storage_refuses_leaves_no_zip_behind(tmp_path: Path) -> None:
    """RemoteAuth saves every minute: each zip kept after a failed upload piled up on
    disk for as long as the storage refused them. The one kept before stays kept."""
    storage = ObjectStorage.local(tmp_path / "media")
    profiles = ProfileStore(storage, None)
    first = tmp_path / "first.zip"
    first.write_bytes(ZIP)
    await profiles.save("ses_1", first)

    class Refusing(ObjectStorage):
        async def put(self, *_args: object) -> None:
            raise OSError(28, "No space left on device")

    refusing = ProfileStore(Refusing.local(tmp_path / "media"), None)
    zips = [tmp_path / f"save-{n}.zip" for n in range(3)]
    for path in zips:
        path.write_bytes(b"PK\x03\x04 newer")
        with pytest.raises(OSError, match="No space"):
            await refusing.save("ses_1", path)
    assert not any(path.exists() for path in zips)
    assert await stored(storage, ProfileStore.key("ses_1")) == ZIP


async def test_a_profile_in_clear_under_a_key_is_handed_back_and_logged(tmp_path: Path) -> None:
    """One saved before ENCRYPTION_KEY was set is in clear until the session saves it
    again (sealed then): refused, every such session would have to be linked again. It
    is handed back, and the log says so; the next save seals it."""
    storage = ObjectStorage.local(tmp_path / "media")
    await ProfileStore(storage, None).save("ses_1", _zip_at(tmp_path))
    profiles = ProfileStore(storage, Cipher.from_text(generate_key()))
    with capture_logs() as logs:
        back = await profiles.load("ses_1", tmp_path)
    assert back is not None
    assert back.read_bytes() == ZIP
    assert [(e["event"], e["session_id"]) for e in logs] == [("webjs_profile_in_clear", "ses_1")]
    await profiles.save("ses_1", _zip_at(tmp_path))
    assert ZIP[:64] not in await stored(storage, ProfileStore.key("ses_1"))
    with capture_logs() as logs:
        assert (await profiles.load("ses_1", tmp_path)) is not None
    assert logs == []


def _zip_at(directory: Path) -> Path:
    zipped = directory / "from-bridge.zip"
    zipped.write_bytes(ZIP)
    return zipped


@SQLITE_ONLY
async def test_a_webjs_session_gets_its_saved_profile_back_at_its_next_start(
    app_factory: AppFactory,
) -> None:
    if shutil.which("chromium") is None and os.environ.get("CI") != "true":
        pytest.skip("chromium is not installed")
    proxy = await SilentProxy().start()
    try:
        async with app_factory.running(encryption_key=generate_key()) as api:
            session = await api.create_session(
                "profiled", engine="webjs", config={"proxy": proxy.url}
            )
            session_id = session["id"]
            engine = api.services.engines.get("webjs")
            assert isinstance(engine, BridgeEngine)
            client = api.services.runtime.client(session_id)
            assert isinstance(client, BridgeClient)
            # The bridge's RemoteAuth store reports a saved profile (after a link).
            report = engine.transfers.path / "s-backup.zip"
            report.write_bytes(ZIP)
            await client.on_frame(
                {"kind": "auth", "session": session_id, "profileZip": str(report)}
            )
            assert not report.exists()
            # A conflict makes RemoteAuth "delete" its profile: we keep ours.
            await client.on_frame({"kind": "auth", "session": session_id, "cleared": True})
            assert engine.profiles is not None
            kept = await stored(api.services.storage, ProfileStore.key(session_id))  # type: ignore[arg-type]
            assert ZIP[:64] not in kept

            restart = await api.request("POST", f"/api/sessions/{session_id}/restart")
            assert restart.status_code == 200, restart.text

            async def handed() -> list[bytes]:
                return [p.read_bytes() for p in engine.transfers.path.glob("profile-*.zip")]

            await wait_for(handed, lambda found: found == [ZIP], 30, "the profile handed back")
            delete = await api.request("DELETE", f"/api/sessions/{session_id}")
            assert delete.status_code == 200, delete.text
            assert await engine.profiles.load(session_id, engine.transfers.path) is None
    finally:
        await proxy.close()
