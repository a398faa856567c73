"""One behavioural module, every engine: what a user of the API sees of a session's life,
whichever engine runs it.

Each engine comes with a driver that plays WhatsApp's part without a network: the mock
through its own sandbox routes, whatsmeow through neonize's own events handed to the
real worker process (its connection attempt held by a silent loopback proxy). What
needs WhatsApp's servers (a send reaching a phone) is skipped for whatsmeow, saying so.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest
from neonize import events as ev
from neonize.proto import Neonize_pb2 as neonize
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

from tests.engines.proxies import SilentProxy
from tests.engines.whatsmeow_support import PHONE, inject, inject_qr, user_jid
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.sessions.support import auth_rows, statuses

SENDER = "15550107777"


class Driver(Protocol):
    engine: str

    def config(self) -> dict[str, Any]: ...

    async def show_qr(self, api: Api, session_id: str) -> None: ...

    async def scan(self, api: Api, session_id: str) -> None: ...

    async def drop(self, api: Api, session_id: str) -> None: ...

    async def back(self, api: Api, session_id: str) -> None: ...

    async def receive_text(self, api: Api, session_id: str, phone: str, text: str) -> str: ...


class MockDriver:
    engine = "mock"

    def config(self) -> dict[str, Any]:
        return {}

    async def show_qr(self, api: Api, session_id: str) -> None:
        return None  # the mock shows a QR by itself

    async def scan(self, api: Api, session_id: str) -> None:
        response = await api.request("POST", f"/api/sessions/{session_id}/mock/scan")
        if response.status_code == 409:  # it is linking by itself (MOCK_AUTH_DELAY_MS)
            await wait_for(
                lambda: api.session(session_id),
                lambda s: s["status"] in ("authenticated", "ready"),
                20,
                "the mock's own link",
            )
            return
        assert response.status_code == 200, response.text

    async def drop(self, api: Api, session_id: str) -> None:
        response = await api.request("POST", f"/api/sessions/{session_id}/mock/disconnect")
        assert response.status_code == 200, response.text

    async def back(self, api: Api, session_id: str) -> None:
        return None  # the mock network answers the reconnect

    async def receive_text(self, api: Api, session_id: str, phone: str, text: str) -> str:
        response = await api.request(
            "POST", f"/api/sessions/{session_id}/mock/inbound", json={"from": phone, "text": text}
        )
        assert response.status_code == 202, response.text
        message_id: str = response.json()["data"]["id"]
        return message_id


class WhatsmeowDriver:
    engine = "whatsmeow"

    def __init__(self, proxy: SilentProxy) -> None:
        self.proxy = proxy

    def config(self) -> dict[str, Any]:
        return {"proxy": self.proxy.url}

    async def show_qr(self, api: Api, session_id: str) -> None:
        await inject_qr(api, session_id, "2@behaviour,qr,code")

    async def scan(self, api: Api, session_id: str) -> None:
        paired = ev.PairStatusEv(ID=user_jid(PHONE, device=3), Status=neonize.PairStatus.SUCCESS)
        await inject(api, session_id, paired)
        await api.wait_status(session_id, "authenticated", 20)
        await inject(api, session_id, ev.ConnectedEv())

    async def drop(self, api: Api, session_id: str) -> None:
        await inject(api, session_id, ev.DisconnectedEv())

    async def back(self, api: Api, session_id: str) -> None:
        await inject(api, session_id, ev.ConnectedEv())

    async def receive_text(self, api: Api, session_id: str, phone: str, text: str) -> str:
        message_id = "3EB0" + secrets.token_hex(8).upper()
        source = neonize.MessageSource(Chat=user_jid(phone), Sender=user_jid(phone))
        info = neonize.MessageInfo(
            MessageSource=source, ID=message_id, Timestamp=1_764_000_000_000, Pushname="Ann"
        )
        await inject(
            api, session_id, ev.MessageEv(Info=info, Message=wa.Message(conversation=text))
        )
        return message_id


@pytest.fixture(params=["mock", "whatsmeow"])
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Driver]:
    if request.param == "mock":
        yield MockDriver()
        return
    proxy = await SilentProxy().start()
    try:
        yield WhatsmeowDriver(proxy)
    finally:
        await proxy.close()


@pytest.fixture
async def api(app_factory: AppFactory, driver: Driver) -> AsyncIterator[Api]:
    # The mock links by itself after MOCK_AUTH_DELAY_MS: long here, so the test scans.
    async with app_factory.running(engine_type=driver.engine, mock_auth_delay_ms=60_000) as started:
        yield started


async def started(api: Api, driver: Driver) -> str:
    session = await api.create_session(f"b-{secrets.token_hex(4)}", config=driver.config())
    assert session["engine"] == driver.engine
    response = await api.request("POST", f"/api/sessions/{session['id']}/start")
    assert response.status_code == 200, response.text
    return str(session["id"])


async def linked(api: Api, driver: Driver) -> str:
    session_id = await started(api, driver)
    await driver.show_qr(api, session_id)
    await api.wait_status(session_id, "qr_ready", 20)
    await driver.scan(api, session_id)
    await api.wait_status(session_id, "ready", 20)
    return session_id


async def test_a_session_links_through_its_qr_and_becomes_ready(api: Api, driver: Driver) -> None:
    session_id = await started(api, driver)
    await driver.show_qr(api, session_id)
    await api.wait_status(session_id, "qr_ready", 20)
    qr = await api.request("GET", f"/api/sessions/{session_id}/qr")
    assert qr.status_code == 200
    assert qr.json()["data"]["qr"]
    await driver.scan(api, session_id)
    session = await api.wait_status(session_id, "ready", 20)
    assert statuses(session)[-3:] == ["qr_ready", "authenticated", "ready"]
    assert session["phoneNumber"]
    assert session["lastError"] is None
    assert len(await auth_rows(api, session_id)) == 1
    gone = await api.request("GET", f"/api/sessions/{session_id}/qr")
    assert gone.status_code == 409


async def test_an_inbound_text_is_stored_announced_and_listed(api: Api, driver: Driver) -> None:
    session_id = await linked(api, driver)
    message_id = await driver.receive_text(api, session_id, SENDER, "hello from a phone")
    chat_id = f"{SENDER}@s.whatsapp.net"

    async def received() -> list[dict[str, Any]]:
        params = {"sessions": session_id, "events": "message.received"}
        response = await api.request("GET", "/api/events", params=params)
        found: list[dict[str, Any]] = response.json()["data"]["events"]
        return found

    events = await wait_for(received, bool, 20, "message.received")
    data = events[0]["data"]
    assert data["id"] == message_id
    assert data["chatId"] == chat_id
    assert data["text"] == "hello from a phone"
    history = await api.request("GET", f"/api/sessions/{session_id}/chats/{chat_id}/messages")
    assert history.status_code == 200, history.text
    assert [m["id"] for m in history.json()["data"]] == [message_id]
    chats = await api.request("GET", f"/api/sessions/{session_id}/chats")
    assert [c["id"] for c in chats.json()["data"]] == [chat_id]
    contacts = await api.request("GET", f"/api/sessions/{session_id}/contacts")
    assert chat_id in [c["id"] for c in contacts.json()["data"]]


async def test_a_lost_connection_is_reported_and_comes_back(api: Api, driver: Driver) -> None:
    session_id = await linked(api, driver)
    await driver.drop(api, session_id)
    session = await wait_for(
        lambda: api.session(session_id),
        lambda s: "disconnected" in statuses(s)[-2:] and statuses(s)[-1] != "ready",
        20,
        "disconnected",
    )
    assert session["lastError"]
    await wait_for(
        lambda: api.session(session_id),
        lambda s: (
            statuses(s)[-2:] in (["disconnected", "initializing"], ["authenticated", "ready"])
        ),
        20,
        "reconnecting",
    )
    await driver.back(api, session_id)
    session = await api.wait_status(session_id, "ready", 20)
    assert session["lastError"] is None


async def test_stop_restart_and_logout(api: Api, driver: Driver) -> None:
    session_id = await linked(api, driver)
    stopped = await api.request("POST", f"/api/sessions/{session_id}/stop")
    assert stopped.json()["data"]["status"] == "stopped"
    assert len(await auth_rows(api, session_id)) == 1  # stop keeps the device
    logout = await api.request("POST", f"/api/sessions/{session_id}/logout")
    assert logout.status_code == 200, logout.text
    assert await auth_rows(api, session_id) == []
    session = await api.session(session_id)
    assert session["phoneNumber"] is None
    deleted = await api.request("DELETE", f"/api/sessions/{session_id}")
    assert deleted.status_code == 200
    assert (await api.request("GET", f"/api/sessions/{session_id}")).status_code == 404


async def test_an_accepted_send_waits_for_the_session(api: Api, driver: Driver) -> None:
    session_id = await started(api, driver)
    response = await api.request(
        "POST",
        f"/api/sessions/{session_id}/messages/text",
        json={"chatId": SENDER, "text": "queued before linking"},
    )
    assert response.status_code == 202, response.text
    message = response.json()["data"]
    assert message["status"] == "pending"
    if driver.engine == "whatsmeow":
        pytest.skip("handing the message to WhatsApp needs WhatsApp's servers")
    await driver.show_qr(api, session_id)
    await api.wait_status(session_id, "qr_ready", 20)
    await driver.scan(api, session_id)
    await wait_for(
        lambda: api.request("GET", f"/api/sessions/{session_id}/messages/{message['id']}"),
        lambda r: r.json()["data"]["status"] in ("sent", "delivered", "read"),
        20,
        "sent",
    )
