"""Stored files that belong to nothing are deleted by maintenance, on local files and on
a real S3 (radosgw): what a deleted session's prefix gains after its delete, and what a
live session stored that no message refers to; nothing else is touched."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from openwa.db.models import MediaTombstoneRow
from openwa.kit.clock import utcnow
from openwa.media.sweep import TOMBSTONE_WAIT
from tests.fixtures.app import Api
from tests.media.conftest import MediaApps, MediaStore
from tests.media.support import image_exchanged, object_key, ready_session, stored_key


async def _tombstones(api: Api) -> list[str]:
    async with api.services.db() as db:
        return list((await db.execute(select(MediaTombstoneRow.session_id))).scalars())


async def test_a_deleted_sessions_prefix_is_emptied_again(
    media_apps: MediaApps, store: MediaStore
) -> None:
    """A file stored under a deleted session's prefix after its delete (an engine's late
    report) goes at the sweep after `TOMBSTONE_WAIT`, and the tombstone with it."""
    api = await media_apps.start(store)
    alice, bob, message_id = await image_exchanged(api)
    assert (await api.request("DELETE", f"/api/sessions/{bob}")).status_code == 200
    assert await _tombstones(api) == [bob]
    late = f"{bob}/late.png"
    await api.services.storage.put(late, b"late", "image/png")
    sweep = api.services.maintenance.media_sweep

    # Too soon: the tombstone waits for late reports.
    assert await sweep.empty_deleted(utcnow()) == 0
    assert late in store.objects()
    due = utcnow() + TOMBSTONE_WAIT + timedelta(minutes=1)

    # The store failing: the tombstone stays for the next run.
    def unreachable(prefix: str) -> Any:
        raise OSError("the store is down")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api.services.storage, "delete_under", unreachable)
        assert await sweep.empty_deleted(due) == 0
    assert await _tombstones(api) == [bob]

    assert await sweep.empty_deleted(due) == 1
    assert store.objects() == {object_key(alice, message_id, "png")}
    assert await _tombstones(api) == []


async def test_unreferenced_files_of_live_sessions_are_swept(
    media_apps: MediaApps, store: MediaStore
) -> None:
    """Once old enough, a file no message refers to goes; a message's file, the engine
    profile, names OpenWA does not make and prefixes that are no session's stay."""
    api = await media_apps.start(store)
    alice, bob, message_id = await image_exchanged(api)
    storage = api.services.storage
    orphan = f"{alice}/orphan.png"
    kept = {
        object_key(alice, message_id, "png"),
        await stored_key(api, bob, message_id),
        f"{alice}/webjs_profile.zip",
        "someone/else.png",
    }
    for key in [orphan, *kept]:
        await storage.put(key, b"x", "application/octet-stream")
    if store.kind == "local":
        # A name OpenWA does not make, under a session's prefix.
        (store.root / alice / "Not-Ours.txt").write_bytes(b"x")
        kept.add(f"{alice}/Not-Ours.txt")
    sweep = api.services.maintenance.media_sweep

    # Younger than the grace: kept (it may be waiting for its row).
    assert await sweep.sweep_live(utcnow() - timedelta(hours=1)) == 0
    assert orphan in store.objects()

    # Not at the start: maintenance's first look is an hour later.
    await api.services.maintenance.run_once()
    assert orphan in store.objects()

    # The S3 server's clock may differ from ours by a little.
    assert await sweep.sweep_live(utcnow() + timedelta(minutes=1)) == 1
    assert store.objects() == kept


async def test_a_local_copy_is_as_young_as_its_making(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    """A local copy is a hard link: it would be as old as its source, and a copy made
    for a row about to be committed (the mock network's) would look swept already."""
    api = await media_apps.start(local_store)
    alice = await ready_session(api, "alice")
    storage = api.services.storage
    source, target = f"{alice['id']}/source.png", f"{alice['id']}/target.png"
    await storage.put(source, b"x", "image/png")
    two_days_ago = time.time() - 2 * 86400
    os.utime(local_store.root / source, (two_days_ago, two_days_ago))
    await storage.copy(source, target)
    hour_ago = utcnow() - timedelta(hours=1)
    assert [key async for keys in storage.listed(alice["id"], hour_ago) for key in keys] == []


async def test_the_health_probe_leaves_nothing(
    media_apps: MediaApps, local_store: MediaStore
) -> None:
    api = await media_apps.start(local_store)
    assert (await api.request("GET", "/health/ready")).status_code == 200
    assert local_store.objects() == set()
    assert not (local_store.root / "health").exists()


async def test_a_file_the_store_refuses_holds_no_other_back(
    media_apps: MediaApps, local_store: MediaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention leaves a file the store refuses to delete to this sweep; one such file
    ended every run at the same place, leaving every file listed after it for good."""
    api = await media_apps.start(local_store)
    alice, bob, _message_id = await image_exchanged(api)
    storage = api.services.storage
    locked, orphans = f"{alice}/alocked.png", [f"{alice}/borphan.png", f"{bob}/orphan.png"]
    for key in [locked, *orphans]:
        await storage.put(key, b"x", "application/octet-stream")
    delete = storage.delete

    async def refusing(key: str) -> None:
        if key == locked:
            raise PermissionError(13, "Permission denied", key)
        await delete(key)

    monkeypatch.setattr(storage, "delete", refusing)
    sweep = api.services.maintenance.media_sweep
    assert await sweep.sweep_live(utcnow() + timedelta(minutes=1)) == 2
    assert locked in local_store.objects()
    assert not set(orphans) & local_store.objects()
