"""Driving whatsmeow sessions without WhatsApp: built neonize events, fed to the worker.

The events travel the whole real path: serialized here, sent to the worker process,
parsed there and handed to the session as if Go had called back, translated, and sent
back to the API process as our engine events.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from neonize import events as neonize_events
from neonize.proto import Neonize_pb2 as neonize

from openwa.engines.whatsmeow.engine import WhatsmeowClient, WhatsmeowEngine
from tests.fixtures.app import Api, wait_for

PHONE = "15550123456"
DEVICE_JID = f"{PHONE}:7@s.whatsapp.net"
_NAMES = {
    cls: name
    for name, cls in vars(neonize_events).items()
    if name.endswith(("Ev", "EV")) and isinstance(cls, type)
}


def user_jid(user: str, server: str = "s.whatsapp.net", device: int = 0) -> Any:
    return neonize.JID(User=user, Server=server, Device=device, Integrator=0)


def whatsmeow(api: Api) -> WhatsmeowEngine:
    engine = api.services.engines.get("whatsmeow")
    assert isinstance(engine, WhatsmeowEngine)
    return engine


async def client_of(api: Api, session_id: str) -> WhatsmeowClient:
    engine = whatsmeow(api)
    client: WhatsmeowClient = await wait_for(
        lambda: _client(engine, session_id), lambda c: c is not None, 10, "whatsmeow client"
    )
    return client


async def _client(engine: WhatsmeowEngine, session_id: str) -> WhatsmeowClient | None:
    return engine.client_of(session_id)


async def inject(api: Api, session_id: str, event: Any) -> None:
    client = await client_of(api, session_id)
    await client.inject(_NAMES[type(event)], event.SerializePartialToString())


async def inject_qr(api: Api, session_id: str, code: str) -> None:
    client = await client_of(api, session_id)
    await client.inject("qr", code.encode())


async def link(api: Api, session_id: str, phone: str = PHONE, device: int = 7) -> None:
    """What whatsmeow reports when a phone scans the QR: paired, then connected."""
    paired = neonize_events.PairStatusEv(
        ID=user_jid(phone, device=device), Status=neonize.PairStatus.SUCCESS
    )
    await inject(api, session_id, paired)
    await api.wait_status(session_id, "authenticated", 20)
    await inject(api, session_id, neonize_events.ConnectedEv())
    await api.wait_status(session_id, "ready", 20)


_DEVICE_COLUMNS = {
    "noise_key": 32,
    "identity_key": 32,
    "signed_pre_key": 32,
    "signed_pre_key_sig": 64,
    "adv_key": 32,
    "adv_details": 16,
    "adv_account_sig": 64,
    "adv_account_sig_key": 32,
    "adv_device_sig": 64,
}


def asyncpg_address(location: str) -> str:
    """whatsmeow's (lib/pq) address as asyncpg takes it: without `connect_timeout`, which
    asyncpg would send the server as a setting it does not have."""
    parts = urlsplit(location)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "connect_timeout"]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def linked_device(api: Api, session_id: str) -> str:
    """Link the session (events only) and put its device in whatsmeow's store, as a
    phone's scan would have: what a restart then resumes. The store's location."""
    await link(api, session_id)
    location: str = (await (await client_of(api, session_id)).describe())["location"]
    await plant_device(location, DEVICE_JID)
    return location


async def resumed(api: Api, session_id: str) -> dict[str, Any]:
    """Wait for the session's client to dial again with its device (no scan)."""
    client = await client_of(api, session_id)
    described: dict[str, Any] = await wait_for(
        client.describe, lambda d: d["connecting"], 20, "resume"
    )
    assert described["jid"] == DEVICE_JID
    return described


async def plant_device(location: str, jid: str, noise_key: bytes | None = None) -> None:
    """Put a linked device (random keys, or the private `noise_key`) in whatsmeow's
    store, as a scan would have: what a restart then resumes. `location` is what the
    worker's client was given."""
    values = {name: os.urandom(size) for name, size in _DEVICE_COLUMNS.items()}
    if noise_key is not None:
        values["noise_key"] = noise_key
    columns = ["jid", "registration_id", "signed_pre_key_id", *values]
    row = [jid, 1234, 1, *values.values()]
    if location.startswith("postgres"):
        marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
        conn = await asyncpg.connect(asyncpg_address(location))
        try:
            # whatsmeow creates its tables when its client starts, a moment after ours.
            await wait_for(
                lambda: conn.fetchval("SELECT to_regclass('whatsmeow_device') IS NOT NULL"),
                bool,
                20,
                "whatsmeow's tables",
            )
            await conn.execute(
                f"INSERT INTO whatsmeow_device ({', '.join(columns)}) VALUES ({marks})", *row
            )
        finally:
            await conn.close()
        return

    async def made() -> bool:
        if not os.path.exists(location):
            return False
        with contextlib.closing(sqlite3.connect(location)) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'whatsmeow_device'"
            ).fetchone()
        return found is not None

    await wait_for(made, bool, 20, "whatsmeow's tables")
    with contextlib.closing(sqlite3.connect(location)) as db, db:
        marks = ", ".join("?" for _ in columns)
        db.execute(f"INSERT INTO whatsmeow_device ({', '.join(columns)}) VALUES ({marks})", row)


async def started(api: Api, **config: Any) -> str:
    """A new whatsmeow session, started with `config` (its proxy, say)."""
    session = await api.create_session(f"wm-{secrets.token_hex(4)}", config=config)
    assert session["engine"] == "whatsmeow"
    response = await api.request("POST", f"/api/sessions/{session['id']}/start")
    assert response.status_code == 200, response.text
    return str(session["id"])


async def linked(api: Api, proxy_url: str) -> str:
    """A whatsmeow session made ready by events, its dial held by a silent proxy."""
    session_id = await started(api, proxy=proxy_url)
    await link(api, session_id)
    return session_id
