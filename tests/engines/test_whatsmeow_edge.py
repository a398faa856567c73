"""The whatsmeow engine up to the network's edge: real neonize clients in the real worker
process, their connection attempts ending at loopback proxies (this machine has no
route to WhatsApp), and the session's life driven by built neonize events."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from neonize import events as ev
from neonize.proto import Neonize_pb2 as neonize

from openwa.engines.whatsmeow.store import whatsmeow_dsn
from tests.engines.proxies import RecordingProxy, SilentProxy
from tests.engines.whatsmeow_support import (
    DEVICE_JID,
    PHONE,
    asyncpg_address,
    client_of,
    inject,
    inject_qr,
    link,
    linked_device,
    plant_device,
    resumed,
    started,
    whatsmeow,
)
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.fixtures.locks import postgres_only
from tests.fixtures.proxy_apps import AnyProxyApps
from tests.sessions.support import auth_rows, statuses

WHATSAPP = "web.whatsapp.com:443"


async def retried(api: Api, session_id: str) -> dict[str, Any]:
    """Wait for a failed attempt followed by another one (reconnect with backoff)."""

    def twice(s: dict[str, Any]) -> bool:
        history = statuses(s)
        return history.count("disconnected") >= 2 and s["lastError"] is not None

    found: dict[str, Any] = await wait_for(lambda: api.session(session_id), twice, 20, "retries")
    return found


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_connection_attempt_reaches_whatsapp_through_the_session_proxy(
    wm_api: Api, recorder: RecordingProxy, scheme: str
) -> None:
    session_id = await started(wm_api, proxy=f"{scheme}://127.0.0.1:{recorder.port}")
    session = await retried(wm_api, session_id)
    assert session["status"] in ("disconnected", "initializing")
    assert "connect failed" in session["lastError"]
    expected = f"http CONNECT {WHATSAPP} HTTP/1.1" if scheme == "http" else f"socks5 1 {WHATSAPP}"
    assert len(recorder.requests) >= 2
    assert set(recorder.requests) == {expected}
    ready = await wm_api.request("GET", "/health/ready")
    assert ready.status_code == 200, ready.text


async def test_without_a_route_the_session_retries_and_the_server_stays_healthy(
    wm_api: Api,
) -> None:
    session_id = await started(wm_api)
    session = await retried(wm_api, session_id)
    assert "whatsapp" in session["lastError"].lower()
    assert (await wm_api.request("GET", "/health")).status_code == 200
    assert (await wm_api.request("GET", "/health/ready")).status_code == 200
    assert (await wm_api.request("GET", "/api/sessions")).status_code == 200


async def test_stop_and_delete_work_while_connecting(
    wm_api: Api, silent: SilentProxy, app_factory: AppFactory
) -> None:
    session_id = await started(wm_api, proxy=silent.url)
    await wait_for(lambda: _held(silent), bool, 20, "dial through the proxy")
    stopped = await wm_api.request("POST", f"/api/sessions/{session_id}/stop")
    assert stopped.status_code == 200
    assert stopped.json()["data"]["status"] == "stopped"
    deleted = await wm_api.request("DELETE", f"/api/sessions/{session_id}")
    assert deleted.status_code == 200
    assert (await wm_api.request("GET", f"/api/sessions/{session_id}")).status_code == 404
    assert not (app_factory.data_dir / "whatsmeow" / f"{session_id}.db").exists()


async def _held(proxy: SilentProxy) -> int:
    return len(proxy.held)


async def test_qr_codes_reach_the_api_as_the_engine_rotates_them(
    wm_api: Api, silent: SilentProxy
) -> None:
    session_id = await started(wm_api, proxy=silent.url)
    for code in ("2@first,code", "2@second,code"):
        await inject_qr(wm_api, session_id, code)
        await wait_for(
            lambda: wm_api.request("GET", f"/api/sessions/{session_id}/qr"),
            lambda r, code=code: r.status_code == 200 and r.json()["data"]["qr"] == code,
            20,
            code,
        )
    assert (await wm_api.session(session_id))["status"] == "qr_ready"
    png = await wm_api.request(
        "GET", f"/api/sessions/{session_id}/qr", headers={"Accept": "image/png"}
    )
    assert png.status_code == 200
    assert png.content.startswith(b"\x89PNG")


async def test_pairing_code_is_refused_clearly_before_the_socket_is_up(
    wm_api: Api, silent: SilentProxy
) -> None:
    session_id = await started(wm_api, proxy=silent.url)
    response = await wm_api.request(
        "POST", f"/api/sessions/{session_id}/pairing-code", json={"phoneNumber": "+15550123456"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "ENGINE_ERROR"
    assert "not waiting to be linked" in error["message"]


async def test_linking_keeps_the_device_and_a_restart_resumes_it_without_a_scan(
    app_factory: AppFactory, silent: SilentProxy
) -> None:
    api, manager = await app_factory.start(engine_type="whatsmeow")
    try:
        session_id = await started(api, proxy=silent.url)
        # What whatsmeow itself saves when a real phone scans: the device and its keys.
        await linked_device(api, session_id)
        session = await api.session(session_id)
        assert session["phoneNumber"] == PHONE
        assert statuses(session)[-2:] == ["authenticated", "ready"]
        rows = await auth_rows(api, session_id)
        assert [row.data for row in rows] == [{"jid": DEVICE_JID}]
    finally:
        await AppFactory.stop(api, manager)
    api, manager = await app_factory.start(engine_type="whatsmeow")
    try:
        described = await resumed(api, session_id)
        assert described["proxy"] == silent.url
        session = await api.session(session_id)
        assert session["status"] == "initializing"
        assert session["phoneNumber"] == PHONE
        assert statuses(session)[-1] == "initializing"
    finally:
        await AppFactory.stop(api, manager)


async def recorded_on_resume(api: Api, session_id: str) -> None:
    """The session dials with the stored device, whose JID its auth row now names."""
    await resumed(api, session_id)
    assert [row.data for row in await auth_rows(api, session_id)] == [{"jid": DEVICE_JID}]


@pytest.mark.parametrize("whatsapp", ["accepts", "refuses"])
async def test_a_device_stored_but_never_recorded_is_resumed_without_a_scan(
    app_factory: AppFactory, silent: SilentProxy, whatsapp: str
) -> None:
    """whatsmeow saves a device before it tells of the link: a worker or API process
    that ended between the two left the device in the session's file and no JID in our
    auth row, and the next start linked a new device (a new scan). A device WhatsApp
    never confirmed (the process ended mid-pairing) is refused: the session fails
    saying so, and its next start links anew."""
    api, manager = await app_factory.start(engine_type="whatsmeow")
    try:
        if whatsmeow_dsn(api.settings.resolved_database_url) is not None:
            pytest.skip("PostgreSQL's shared store tells a device by its QR noise key (below)")
        session_id = await started(api, proxy=silent.url)
        described = await wait_for(
            (await client_of(api, session_id)).describe, lambda d: d["connecting"], 20, "dial"
        )
        assert described["jid"] is None  # linking a new device
        await plant_device(described["location"], DEVICE_JID)  # saved; the link not told
        assert await auth_rows(api, session_id) == []
    finally:
        await AppFactory.stop(api, manager)
    api, manager = await app_factory.start(engine_type="whatsmeow")
    try:
        await recorded_on_resume(api, session_id)
        if whatsapp == "refuses":
            await inject(api, session_id, ev.LoggedOutEv(Reason=neonize.LOGGED_OUT))
            session = await api.wait_status(session_id, "failed", 20)
            assert "without a completed link" in session["lastError"]
            assert await auth_rows(api, session_id) == []
            return
        # Connected: the worker tells of the link, with the phone number.
        await inject(api, session_id, ev.ConnectedEv())
        session = await api.wait_status(session_id, "ready", 20)
        assert session["phoneNumber"] == PHONE
    finally:
        await AppFactory.stop(api, manager)


def qr_code(noise: X25519PrivateKey) -> str:
    """A QR code as whatsmeow makes it: ref, noise, identity and adv keys, client type."""
    public = noise.public_key().public_bytes_raw()
    keys = [base64.b64encode(k).decode() for k in (public, os.urandom(32), os.urandom(32))]
    return f"https://wa.me/settings/linked_devices#2@{secrets.token_hex(8)},{','.join(keys)},1"


async def test_a_device_stored_but_never_recorded_is_found_by_its_qr_noise_key(
    app_factory: AppFactory, silent: SilentProxy
) -> None:
    """PostgreSQL's store is shared by every session, so a device whatsmeow stored before
    it told of the link is found by the noise key of the QR code the session showed
    (before: a new scan). A restart whose QR's device was never stored links anew."""
    noise = X25519PrivateKey.generate()
    api, manager = await app_factory.start(engine_type="whatsmeow")
    try:
        if whatsmeow_dsn(api.settings.resolved_database_url) is None:
            pytest.skip("a session's own SQLite file tells its device (the test above)")
        session_id, unlinked, deleted = [await started(api, proxy=silent.url) for _ in range(3)]
        gone = X25519PrivateKey.generate()
        for sid, key in (
            (session_id, noise),
            (unlinked, X25519PrivateKey.generate()),
            (deleted, gone),
        ):
            described = await wait_for(
                (await client_of(api, sid)).describe, lambda d: d["connecting"], 20, "dial"
            )
            assert described["jid"] is None  # linking a new device
            await inject_qr(api, sid, qr_code(key))
            rows = await wait_for(
                lambda sid=sid: auth_rows(api, sid), bool, 20, "the QR's key recorded"
            )
            public = key.public_key().public_bytes_raw()
            assert [row.data for row in rows] == [
                {"pairingNoiseKey": base64.b64encode(public).decode()}
            ]
        location = described["location"]
        # Another device first: the store holds every session's devices.
        await plant_device(location, "15550001111:3@s.whatsapp.net")
        await plant_device(location, DEVICE_JID, noise.private_bytes_raw())
        # A session deleted takes the device its QR linked, though never told of.
        await plant_device(location, "15550002222:4@s.whatsapp.net", gone.private_bytes_raw())
        response = await api.request("DELETE", f"/api/sessions/{deleted}")
        assert response.status_code == 200, response.text
        conn = await asyncpg.connect(asyncpg_address(location))
        try:
            jids = await conn.fetch("SELECT jid FROM whatsmeow_device ORDER BY jid")
        finally:
            await conn.close()
        assert [r["jid"] for r in jids] == sorted(["15550001111:3@s.whatsapp.net", DEVICE_JID])
    finally:
        await AppFactory.stop(api, manager)
    api, manager = await app_factory.start(engine_type="whatsmeow")
    try:
        await recorded_on_resume(api, session_id)
        described = await wait_for(
            (await client_of(api, unlinked)).describe, lambda d: d["connecting"], 20, "dial"
        )
        assert described["jid"] is None  # no device of its key: a new one, a new QR
        await inject(api, session_id, ev.ConnectedEv())
        session = await api.wait_status(session_id, "ready", 20)
        assert session["phoneNumber"] == PHONE
    finally:
        await AppFactory.stop(api, manager)


async def test_a_device_missing_from_the_store_fails_the_session_not_the_worker(
    app_factory: AppFactory, silent: SilentProxy
) -> None:
    api, manager = await app_factory.start(engine_type="whatsmeow")
    try:
        session_id = await started(api, proxy=silent.url)
        await link(api, session_id)  # events only: whatsmeow's store has no such device
    finally:
        await AppFactory.stop(api, manager)
    api, manager = await app_factory.start(engine_type="whatsmeow")
    try:
        other = await started(api, proxy=silent.url)
        session = await api.wait_status(session_id, "failed", 20)
        assert session["lastError"].startswith("DEVICE_MISSING")
        assert await auth_rows(api, session_id) == []
        pid = whatsmeow(api).worker_pid
        assert pid is not None
        described = await (await client_of(api, other)).describe()
        assert described["connecting"]
        assert whatsmeow(api).worker_pid == pid
    finally:
        await AppFactory.stop(api, manager)


async def test_device_store_lives_where_the_composition_root_says(
    wm_api: Api, silent: SilentProxy, app_factory: AppFactory
) -> None:
    session_id = await started(wm_api, proxy=silent.url)
    described = await wait_for(
        (await client_of(wm_api, session_id)).describe, lambda d: d["connecting"], 20, "dial"
    )
    url = wm_api.settings.resolved_database_url
    dsn = whatsmeow_dsn(url)
    if dsn is None:
        path = app_factory.data_dir / "whatsmeow" / f"{session_id}.db"
        assert described["location"] == str(path)

        async def exists() -> bool:
            return path.exists()

        # whatsmeow opens its store file as it dials: under load that can come a little
        # after the dial is reported.
        await wait_for(exists, bool, 20, "the device store file")
        return
    assert described["location"] == dsn
    conn = await asyncpg.connect(asyncpg_address(dsn))
    try:
        tables = await wait_for(
            lambda: conn.fetch(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'whatsmeow_%'"
            ),
            lambda rows: any(r["tablename"] == "whatsmeow_device" for r in rows),
            20,
            "whatsmeow tables",
        )
        ours = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename = 'sessions'")
    finally:
        await conn.close()
    assert len(tables) > 5
    assert ours  # the same database as ours


async def test_logged_out_from_the_phone_fails_the_session_and_forgets_the_device(
    wm_api: Api, silent: SilentProxy, app_factory: AppFactory
) -> None:
    session_id = await started(wm_api, proxy=silent.url)
    await link(wm_api, session_id)
    await inject(wm_api, session_id, ev.LoggedOutEv(Reason=neonize.LOGGED_OUT))
    session = await wm_api.wait_status(session_id, "failed", 20)
    assert session["lastError"].startswith("LOGGED_OUT")
    assert session["phoneNumber"] is None
    assert await auth_rows(wm_api, session_id) == []
    assert not (app_factory.data_dir / "whatsmeow" / f"{session_id}.db").exists()


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev.StreamReplacedEv(), "STREAM_REPLACED"),
        (
            ev.TemporaryBanEv(Code=neonize.TemporaryBan.BLOCKED_BY_USERS, Expire=3600),
            "TEMPORARY_BAN",
        ),
    ],
)
async def test_replaced_or_banned_sessions_fail_with_a_clear_last_error(
    wm_api: Api, silent: SilentProxy, event: Any, expected: str
) -> None:
    session_id = await started(wm_api, proxy=silent.url)
    await link(wm_api, session_id)
    await inject(wm_api, session_id, event)
    session = await wm_api.wait_status(session_id, "failed", 20)
    assert session["lastError"].startswith(expected)
    if expected == "TEMPORARY_BAN":
        assert "BLOCKED_BY_USERS" in session["lastError"]
        assert "3600s" in session["lastError"]
    # The device is kept: a replaced or banned session can be started again.
    assert [row.data for row in await auth_rows(wm_api, session_id)] == [{"jid": DEVICE_JID}]


async def test_lost_connection_goes_disconnected_then_reconnects(
    wm_api: Api, silent: SilentProxy
) -> None:
    session_id = await started(wm_api, proxy=silent.url)
    await link(wm_api, session_id)
    await inject(wm_api, session_id, ev.DisconnectedEv())
    # The runtime reconnects: the worker finds whatsmeow still at it and starts nothing.
    session = await wait_for(
        lambda: wm_api.session(session_id),
        lambda s: statuses(s)[-3:] == ["ready", "disconnected", "initializing"],
        20,
        "disconnected, then reconnecting",
    )
    assert session["lastError"] == "connection to WhatsApp lost"
    client = await client_of(wm_api, session_id)
    assert (await client.describe())["connecting"]
    await inject(wm_api, session_id, ev.ConnectedEv())
    session = await wm_api.wait_status(session_id, "ready", 20)
    assert session["lastError"] is None


async def test_a_crashed_worker_is_replaced_and_its_sessions_reconnect(
    wm_api: Api, silent: SilentProxy
) -> None:
    session_id = await started(wm_api, proxy=silent.url)
    await link(wm_api, session_id)
    client = await client_of(wm_api, session_id)
    await plant_device((await client.describe())["location"], DEVICE_JID)
    engine = whatsmeow(wm_api)
    pid = engine.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    session = await wait_for(
        lambda: wm_api.session(session_id),
        lambda s: s["lastError"] == "the whatsmeow worker exited",
        20,
        "worker exit seen",
    )
    assert session["status"] in ("disconnected", "initializing")
    await wait_for(
        lambda: asyncio.sleep(0, engine.worker_pid),
        lambda p: p is not None and p != pid,
        20,
        "new worker",
    )
    client = await client_of(wm_api, session_id)
    described = await wait_for(client.describe, lambda d: d["connecting"], 20, "reconnect")
    assert described["jid"] == DEVICE_JID
    assert (await wm_api.request("GET", "/health/ready")).status_code == 200


def test_postgres_address_for_whatsmeow() -> None:
    assert whatsmeow_dsn("sqlite+aiosqlite:///x.db") is None
    assert (
        whatsmeow_dsn("postgresql+asyncpg://u:p@h:5433/db")
        == "postgres://u:p@h:5433/db?sslmode=prefer&connect_timeout=10"
    )
    assert (
        whatsmeow_dsn("postgresql://h/db?ssl=require", 2.5)
        == "postgres://h/db?sslmode=require&connect_timeout=3"
    )
    # asyncpg's names for what lib/pq calls otherwise.
    assert whatsmeow_dsn("postgresql://h/db?timeout=4&direct_tls=true&ssl=require") == (
        "postgres://h/db?connect_timeout=4&sslnegotiation=direct&sslmode=require"
    )
    # Options only our side takes are left out (lib/pq would send them to the server,
    # which refuses the connection); those lib/pq reads itself go through.
    assert whatsmeow_dsn(
        "postgresql+asyncpg://h/db?prepared_statement_cache_size=0&command_timeout=5"
        "&statement_cache_size=0&target_session_attrs=read-write&passfile=/p"
    ) == (
        "postgres://h/db?target_session_attrs=read-write&passfile=%2Fp"
        "&sslmode=prefer&connect_timeout=10"
    )


async def test_a_database_url_with_options_of_ours_still_links_and_resumes(
    database_url: str, tmp_path: Path, silent: SilentProxy
) -> None:
    """Behind PgBouncer, DATABASE_URL carries `prepared_statement_cache_size=0`, which
    only SQLAlchemy understands (and `command_timeout` only asyncpg): whatsmeow's store
    and our checks of it still work."""
    postgres_only(database_url)
    options = "prepared_statement_cache_size=0&command_timeout=30"
    joined = f"{database_url}{'&' if '?' in database_url else '?'}{options}"
    factory = AnyProxyApps(joined, tmp_path / "d")
    api, manager = await factory.start(engine_type="whatsmeow")
    try:
        session_id = await started(api, proxy=silent.url)
        # Its device planted once whatsmeow made its tables: it connected.
        location = await linked_device(api, session_id)
        assert "prepared_statement_cache_size" not in location
        assert "command_timeout" not in location
    finally:
        await AppFactory.stop(api, manager)
    api, manager = await factory.start(engine_type="whatsmeow")
    try:
        # The resume first asks the store whether the device is there (our query).
        await resumed(api, session_id)
    finally:
        await AppFactory.stop(api, manager)


async def test_the_mock_sandbox_routes_say_whatsmeow_cannot(wm_api: Api) -> None:
    session = await wm_api.create_session(f"wm-{secrets.token_hex(4)}")
    response = await wm_api.request("POST", f"/api/sessions/{session['id']}/mock/scan")
    assert response.status_code == 501, response.text
    error = response.json()["error"]
    assert error["code"] == "NOT_SUPPORTED"
    assert error["details"] == {"engine": "whatsmeow", "capability": "mock_control"}


async def test_a_deleted_session_leaves_the_worker(wm_api: Api, silent: SilentProxy) -> None:
    kept = await started(wm_api, proxy=silent.url)
    gone = await started(wm_api, proxy=silent.url)
    engine = whatsmeow(wm_api)
    for session_id in (kept, gone):
        await wait_for((await client_of(wm_api, session_id)).describe, bool, 20, "running")
    worker = await engine.worker()
    assert (await worker.request("ping"))["sessions"] == 2
    assert (await wm_api.request("DELETE", f"/api/sessions/{gone}")).status_code == 200
    assert (await worker.request("ping"))["sessions"] == 1


async def test_a_worker_piling_up_neonizes_leaks_is_recycled(wm_api: Api) -> None:
    """neonize leaves a device store (a PostgreSQL connection, or file handles) open
    per connection attempt: a session retrying without a route would exhaust them."""
    engine = whatsmeow(wm_api)
    engine.recycle_after = 4
    await started(wm_api)  # no route: fails at once, retries every 0.05-0.2 s
    first = await wait_for(lambda: asyncio.sleep(0, engine.worker_pid), bool, 20, "worker")
    await wait_for(
        lambda: asyncio.sleep(0, engine.worker_pid),
        lambda pid: pid is not None and pid != first,
        30,
        "a recycled worker",
    )
    dsn = whatsmeow_dsn(wm_api.settings.resolved_database_url)
    if dsn is not None:
        conn = await asyncpg.connect(asyncpg_address(dsn))
        try:
            database = dsn.rsplit("/", 1)[1].split("?")[0]
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
            )
        finally:
            await conn.close()
        assert count < 4 * 4 + 10  # leaked stores stay bounded, with our own pool


async def test_a_qr_left_unscanned_fails_the_session_saying_so(
    wm_api: Api, silent: SilentProxy
) -> None:
    whatsmeow(wm_api).qr_timeout_s = 1.0  # read when the worker starts
    session_id = await started(wm_api, proxy=silent.url)
    await inject_qr(wm_api, session_id, "2@only,code")
    await wm_api.wait_status(session_id, "qr_ready", 20)
    session = await wm_api.wait_status(session_id, "failed", 20)
    assert session["lastError"].startswith("QR_TIMEOUT")
    again = await wm_api.request("POST", f"/api/sessions/{session_id}/start")
    assert again.status_code == 200
