"""whatsmeow's device file after a crash: a write of whatsmeow's cut short (the worker
killed mid-transaction) leaves a hot rollback journal beside the file. The check that
the linked device is still there opened the file read-only, which cannot roll the
journal back: it failed, the device was taken for missing, and the file was deleted
with it, so the session asked for a new scan."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from openwa.engines.whatsmeow.store import DeviceStore

JID = "6281234567890.0:1@s.whatsapp.net"

# A device row committed, then a large write killed before its commit (the journal is
# left hot, the file half written).
_CRASH = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 1")
db.execute("CREATE TABLE whatsmeow_device (jid TEXT PRIMARY KEY, blob BLOB)")
db.execute("INSERT INTO whatsmeow_device VALUES (?, zeroblob(100000))", (sys.argv[2],))
db.execute("BEGIN")
db.execute("UPDATE whatsmeow_device SET blob = randomblob(100000)")
db.execute("INSERT INTO whatsmeow_device VALUES ('other', randomblob(500000))")
os._exit(0)
"""


async def test_a_device_file_left_mid_write_is_rolled_back_not_deleted(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path)
    path = Path(store.location("ses_crashed"))
    crash = await asyncio.create_subprocess_exec(sys.executable, "-c", _CRASH, str(path), JID)
    assert await crash.wait() == 0
    assert Path(f"{path}-journal").exists(), "the crash left no hot journal"
    with pytest.raises(sqlite3.OperationalError):  # what a read-only open meets
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute(
            "SELECT 1 FROM whatsmeow_device"
        ).fetchone()

    assert await store.has_device("ses_crashed", JID)
    assert not await store.has_device("ses_crashed", "someone-else@s.whatsapp.net")


async def test_a_file_without_whatsmeows_tables_holds_no_device(tmp_path: Path) -> None:
    store = DeviceStore(tmp_path)
    path = Path(store.location("ses_new"))
    sqlite3.connect(path).close()
    assert not await store.has_device("ses_new", JID)
    assert not await store.has_device("ses_never", JID)  # no file at all
