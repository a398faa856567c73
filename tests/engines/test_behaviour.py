"""One behavioural module, every engine: what a user of the API sees of a session's life,
whichever engine runs it.

Each engine comes with a driver that plays WhatsApp's part without a network: the mock
through its own sandbox routes, whatsmeow through neonize's own events handed to the
real worker process (its connection attempt held by a silent loopback proxy). What
needs WhatsApp's servers (a send reaching a phone) is skipped for whatsmeow, saying so.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from neonize import events as ev
from neonize.proto import Neonize_pb2 as neonize
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

from tests.engines.bridge_driver import BridgeDriver
from tests.engines.proxies import SilentProxy
from tests.engines.whatsmeow_support import PHONE, inject, inject_qr, user_jid
from tests.fixtures.app import Api, AppFactory, wait_for
from tests.sessions.support import auth_rows, statuses

SENDER = "15550107777"


class Driver(Protocol):
    engine: str
    kinds: frozenset[str]

    def settings(self) -> dict[str, Any]: ...

    def config(self) -> dict[str, Any]: ...

    async def show_qr(self, api: Api, session_id: str) -> None: ...

    async def scan(self, api: Api, session_id: str) -> None: ...

    async def drop(self, api: Api, session_id: str) -> None: ...

    async def back(self, api: Api, session_id: str) -> None: ...

    async def receive_text(self, api: Api, session_id: str, phone: str, text: str) -> str: ...

    async def receive_by_lid(
        self, api: Api, session_id: str, lid: str, text: str, phone: str | None = None
    ) -> str:
        """A text in the direct chat WhatsApp addresses by `lid`: with the phone number
        behind it when given (so the engine can map it), else by LID only."""
        ...

    async def report(self, api: Api, session_id: str, body: dict[str, Any]) -> str | None:
        """Make WhatsApp report what `body` describes, in `/mock/report`'s terms (`kind`:
        edit, revoke, poll_vote, read_self, presence, call, chat_update, group_update,
        server_error, unknown); the id of an `unknown` message. `kinds`: those the driver
        can make the engine report."""
        ...


class MockDriver:
    """The mock engine; with `own_ids` (`MOCK_ENGINE_IDS=own`) it sends under ids of its
    own and reports them as engine ids, as whatsmeow does, so every scenario also runs
    through the `engineId` mapping (acks, replies, reactions, revokes)."""

    engine = "mock"

    def __init__(self, *, own_ids: bool = False) -> None:
        self.own_ids = own_ids

    def settings(self) -> dict[str, Any]:
        if self.own_ids:
            # No pause before the acks: they race the sender's record of the engine id.
            return {"mock_engine_ids": "own", "mock_ack_delay_ms": 0}
        return {}

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

    async def receive_by_lid(
        self, api: Api, session_id: str, lid: str, text: str, phone: str | None = None
    ) -> str:
        body = {"from": lid, "text": text} if phone is None else {"from": phone, "fromLid": lid}
        response = await api.request(
            "POST", f"/api/sessions/{session_id}/mock/inbound", json={"text": text, **body}
        )
        assert response.status_code == 202, response.text
        message_id: str = response.json()["data"]["id"]
        return message_id

    kinds = frozenset(
        {
            "edit",
            "revoke",
            "poll_vote",
            "read_self",
            "presence",
            "call",
            "chat_update",
            "group_update",
            "server_error",
            "unknown",
        }
    )

    async def report(self, api: Api, session_id: str, body: dict[str, Any]) -> str | None:
        response = await api.request("POST", f"/api/sessions/{session_id}/mock/report", json=body)
        assert response.status_code == 202, response.text
        reported: str | None = response.json()["data"]["id"]
        return reported


def _jid(address: str) -> Any:
    """neonize's JID of a phone number or address."""
    user, _, server = address.partition("@")
    return user_jid(user.lstrip("+"), server=server or "s.whatsapp.net")


_NOW_MS = 1_764_000_100_000


def _carried(body: dict[str, Any]) -> Any:
    """The WhatsApp message that carries an edit, revoke, timer change or unknown type."""
    kind = body["kind"]
    if kind == "edit":
        edited = wa.ProtocolMessage(
            type=wa.ProtocolMessage.MESSAGE_EDIT,
            key=MessageKey(ID=body["messageId"]),
            editedMessage=wa.Message(conversation=body["text"]),
            timestampMS=_NOW_MS,
        )
        return wa.Message(protocolMessage=edited)
    if kind == "revoke":
        revoke = wa.ProtocolMessage(
            type=wa.ProtocolMessage.REVOKE, key=MessageKey(ID=body["messageId"])
        )
        return wa.Message(protocolMessage=revoke)
    if kind == "chat_update":
        setting = wa.ProtocolMessage(
            type=wa.ProtocolMessage.EPHEMERAL_SETTING,
            ephemeralExpiration=body["ephemeralSeconds"],
        )
        return wa.Message(protocolMessage=setting)
    return wa.Message(eventMessage=wa.EventMessage(name="Party"))  # not translated


def _neonize_event(body: dict[str, Any], message_id: str) -> Any:
    """neonize's event for a `/mock/report` body (the kinds `WhatsmeowDriver` takes)."""
    kind = body["kind"]
    sender = _jid(body.get("from") or PHONE)
    chat = _jid(body.get("chatId") or body.get("from") or PHONE)
    if kind in ("edit", "revoke", "chat_update", "unknown"):
        info = neonize.MessageInfo(
            MessageSource=neonize.MessageSource(Chat=chat, Sender=sender),
            ID=message_id,
            Timestamp=_NOW_MS,
            Edit="1" if kind == "edit" else "",
        )
        return ev.MessageEv(Info=info, Message=_carried(body))
    if kind == "read_self":
        return ev.ReceiptEv(
            MessageSource=neonize.MessageSource(Chat=chat, Sender=_jid(PHONE), IsFromMe=True),
            MessageIDs=body["messageIds"],
            Type=neonize.Receipt.READ_SELF,
            Timestamp=_NOW_MS // 1000,
        )
    if kind == "presence":
        assert body["presence"] == "composing", body
        return ev.ChatPresenceEv(
            MessageSource=neonize.MessageSource(Chat=chat, Sender=sender),
            State=neonize.ChatPresence.COMPOSING,
            Media=neonize.ChatPresence.TEXT,
        )
    if kind == "call":
        media = [neonize.Node(Tag="audio")]
        if body.get("isVideo"):
            media.append(neonize.Node(Tag="video"))
        meta = neonize.BasicCallMeta(
            callID=message_id, timestamp=_NOW_MS // 1000, callCreator=sender
        )
        getattr(meta, "from").CopyFrom(sender)
        return ev.CallOfferEv(basicCallMeta=meta, data=neonize.Node(Tag="offer", Nodes=media))
    assert (kind, body["action"]) == ("group_update", "subject"), body
    return ev.GroupInfoEv(
        JID=_jid(body["groupId"]), Sender=sender, Name=neonize.GroupName(Name=body["value"])
    )


class WhatsmeowDriver:
    engine = "whatsmeow"

    def __init__(self, proxy: SilentProxy) -> None:
        self.proxy = proxy

    def settings(self) -> dict[str, Any]:
        return {}

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

    async def receive_by_lid(
        self, api: Api, session_id: str, lid: str, text: str, phone: str | None = None
    ) -> str:
        message_id = "3EB0" + secrets.token_hex(8).upper()
        lid_jid = user_jid(lid.removesuffix("@lid"), server="lid")
        alt = {} if phone is None else {"SenderAlt": user_jid(phone)}
        source = neonize.MessageSource(Chat=lid_jid, Sender=lid_jid, **alt)
        info = neonize.MessageInfo(
            MessageSource=source, ID=message_id, Timestamp=1_764_000_000_000, Pushname="Ann"
        )
        await inject(
            api, session_id, ev.MessageEv(Info=info, Message=wa.Message(conversation=text))
        )
        return message_id

    # Poll votes reach the core only once the worker's client decrypted them, which
    # needs the poll's keys from WhatsApp: not injectable.
    kinds = frozenset(
        {
            "edit",
            "revoke",
            "read_self",
            "presence",
            "call",
            "chat_update",
            "group_update",
            "unknown",
        }
    )

    async def report(self, api: Api, session_id: str, body: dict[str, Any]) -> str | None:
        """neonize's own event for each kind, as WhatsApp makes whatsmeow report it."""
        if body["kind"] not in self.kinds:
            pytest.skip(f"whatsmeow cannot be made to report {body['kind']} offline")
        message_id = "3EB0" + secrets.token_hex(8).upper()
        await inject(api, session_id, _neonize_event(body, message_id))
        return message_id if body["kind"] == "unknown" else None


@pytest.fixture(params=["mock", "mock-own-ids", "whatsmeow", "baileys", "webjs"])
async def driver(request: pytest.FixtureRequest) -> AsyncIterator[Driver]:
    if request.param.startswith("mock"):
        yield MockDriver(own_ids=request.param == "mock-own-ids")
        return
    if request.param in ("baileys", "webjs"):
        if request.getfixturevalue("database_kind") != "sqlite":
            # Beyond its auth store (tests/engines/bridge, both databases) the engine
            # never touches the database: what differs is the core, run here by the others.
            pytest.skip("the bridge engines run this module on SQLite")
        request.getfixturevalue("bridge_dir")
        if request.param == "webjs" and shutil.which("chromium") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("chromium is not installed", pytrace=False)
            pytest.skip("chromium is not installed")
    proxy = await SilentProxy().start()
    try:
        if request.param == "whatsmeow":
            yield WhatsmeowDriver(proxy)
        else:
            yield BridgeDriver(request.param, proxy)
    finally:
        await proxy.close()


@pytest.fixture
async def api(app_factory: AppFactory, driver: Driver) -> AsyncIterator[Api]:
    # The mock links by itself after MOCK_AUTH_DELAY_MS: long here, so the test scans.
    async with app_factory.running(
        engine_type=driver.engine, mock_auth_delay_ms=60_000, **driver.settings()
    ) as started:
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
    if driver.engine != "mock":
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


# ---------------------------------------------------------------------------------------
# Between two accounts: acks, replies, reactions and revokes name messages by the ids the
# engine uses; clients only ever see each side's own ids.


def needs_network(driver: Driver) -> None:
    if driver.engine != "mock":
        pytest.skip("a send reaching another account needs WhatsApp's servers")


async def logged(api: Api, session_id: str, events: str) -> list[dict[str, Any]]:
    params = {"sessions": session_id, "events": events, "limit": 1000}
    response = await api.request("GET", "/api/events", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]["events"]
    return found


async def wait_logged(api: Api, session_id: str, event: str, **match: Any) -> dict[str, Any]:
    """The first logged `event` of the session whose data has every `match` item."""

    def first(items: list[dict[str, Any]]) -> dict[str, Any] | None:
        return next(
            (e for e in items if all(e["data"].get(k) == v for k, v in match.items())), None
        )

    items = await wait_for(
        lambda: logged(api, session_id, event),
        lambda items: first(items) is not None,
        20,
        f"{event} {match}",
    )
    found = first(items)
    assert found is not None
    return found


async def send(api: Api, session_id: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.request("POST", f"/api/sessions/{session_id}/messages/{route}", json=body)
    assert response.status_code == 202, response.text
    message: dict[str, Any] = response.json()["data"]
    return message


async def message(api: Api, session_id: str, message_id: str) -> dict[str, Any]:
    response = await api.request("GET", f"/api/sessions/{session_id}/messages/{message_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["data"]
    return found


async def wait_status(api: Api, session_id: str, message_id: str, status: str) -> None:
    await wait_for(
        lambda: message(api, session_id, message_id),
        lambda m: m["status"] == status,
        20,
        f"{message_id} {status}",
    )


async def two_accounts(api: Api, driver: Driver) -> tuple[str, str, str, str]:
    """Two linked sessions; their ids and chat addresses."""
    alice, bob = await linked(api, driver), await linked(api, driver)
    alice_phone = (await api.session(alice))["phoneNumber"]
    bob_phone = (await api.session(bob))["phoneNumber"]
    return alice, bob, f"{alice_phone}@s.whatsapp.net", f"{bob_phone}@s.whatsapp.net"


@dataclass(frozen=True)
class Exchange:
    """Alice sent Bob `text`: her id for it (`mine`) and Bob's (`theirs`)."""

    alice: str
    bob: str
    alice_chat: str
    bob_chat: str
    mine: str
    theirs: str


async def exchange(api: Api, driver: Driver, text: str) -> Exchange:
    alice, bob, alice_chat, bob_chat = await two_accounts(api, driver)
    first = await send(api, alice, "text", {"chatId": bob_chat, "text": text})
    received = await wait_logged(api, bob, "message.received", text=text)
    return Exchange(alice, bob, alice_chat, bob_chat, first["id"], received["data"]["id"])


async def test_a_send_is_acked_in_order_under_our_id(api: Api, driver: Driver) -> None:
    needs_network(driver)
    alice, bob, alice_chat, bob_chat = await two_accounts(api, driver)
    sent = [
        await send(api, alice, "text", {"chatId": bob_chat, "text": f"hello {n}"}) for n in range(5)
    ]
    for item in sent:
        await wait_status(api, alice, item["id"], "read")
    log = await logged(api, alice, "message.sent,message.ack")
    for item in sent:
        steps = [e["data"].get("status", "sent") for e in log if e["data"]["id"] == item["id"]]
        assert steps == ["sent", "delivered", "read"], (item["id"], steps)
    for n, item in enumerate(sent):
        received = await wait_logged(api, bob, "message.received", text=f"hello {n}")
        assert received["data"]["chatId"] == alice_chat
        # Under the engine's own ids the other side knows the message by another id.
        assert (received["data"]["id"] == item["id"]) is not getattr(driver, "own_ids", False)


async def test_a_reply_quotes_the_message_by_each_sides_id(api: Api, driver: Driver) -> None:
    needs_network(driver)
    x = await exchange(api, driver, "question")
    body = {"chatId": x.alice_chat, "text": "answer", "replyTo": x.theirs}
    reply = await send(api, x.bob, "text", body)
    assert reply["replyTo"] == x.theirs
    answer = await wait_logged(api, x.alice, "message.received", text="answer")
    assert answer["data"]["replyTo"] == x.mine
    assert (await message(api, x.alice, answer["data"]["id"]))["replyTo"] == x.mine
    # And the other way: Alice quotes her own message.
    await send(api, x.alice, "text", {"chatId": x.bob_chat, "text": "again", "replyTo": x.mine})
    again = await wait_logged(api, x.bob, "message.received", text="again")
    assert again["data"]["replyTo"] == x.theirs


async def test_reactions_name_each_sides_message(api: Api, driver: Driver) -> None:
    needs_network(driver)
    x = await exchange(api, driver, "react to me")
    await send(api, x.bob, "reaction", {"messageId": x.theirs, "emoji": "👍"})
    reaction = await wait_logged(api, x.alice, "message.reaction", emoji="👍")
    assert reaction["data"]["messageId"] == x.mine
    await wait_status(api, x.alice, x.mine, "read")
    await send(api, x.alice, "reaction", {"messageId": x.mine, "emoji": "🎉"})
    own = await wait_logged(api, x.bob, "message.reaction", emoji="🎉")
    assert own["data"]["messageId"] == x.theirs


async def test_a_revoke_reaches_both_sides_by_their_ids(api: Api, driver: Driver) -> None:
    needs_network(driver)
    x = await exchange(api, driver, "oops")
    await wait_status(api, x.alice, x.mine, "read")
    response = await api.request("DELETE", f"/api/sessions/{x.alice}/messages/{x.mine}")
    assert response.status_code == 200, response.text
    revoked = await wait_logged(api, x.alice, "message.revoked", id=x.mine)
    assert revoked["data"]["chatId"] == x.bob_chat
    await wait_logged(api, x.bob, "message.revoked", id=x.theirs)
    assert (await message(api, x.alice, x.mine))["revoked"] is True
    assert (await message(api, x.bob, x.theirs))["revoked"] is True


# ---------------------------------------------------------------------------------------
# LIDs: WhatsApp may address a person by LID instead of phone number; chats stay keyed
# by phone number wherever the engine can map the LID, the LID shown alongside.

LID = "100000000000077@lid"


async def test_a_lid_chat_joins_the_phone_numbers_once_mapped(api: Api, driver: Driver) -> None:
    """A message by LID only is kept under the LID; once a message shows the phone number
    behind it, the two chats are one (`contact.update` with the LID), and later messages
    by LID only land in the phone number's chat."""
    session_id = await linked(api, driver)
    phone_chat = f"{SENDER}@s.whatsapp.net"
    by_lid = await driver.receive_by_lid(api, session_id, LID, "who am I")
    await wait_logged(api, session_id, "message.received", id=by_lid, chatId=LID)
    mapped = await driver.receive_by_lid(api, session_id, LID, "mapped", phone=SENDER)
    later = await driver.receive_by_lid(api, session_id, LID, "still by lid")
    update = await wait_logged(api, session_id, "contact.update", contactId=phone_chat)
    assert update["data"]["lid"] == LID
    for message_id in (mapped, later):
        received = await wait_logged(api, session_id, "message.received", id=message_id)
        assert received["data"]["chatId"] == phone_chat
        assert received["data"]["from"] == phone_chat
        assert received["data"]["fromLid"] == LID
    chats = await api.request("GET", f"/api/sessions/{session_id}/chats")
    assert [c["id"] for c in chats.json()["data"]] == [phone_chat]
    history = await api.request("GET", f"/api/sessions/{session_id}/chats/{phone_chat}/messages")
    assert {m["id"] for m in history.json()["data"]} == {later, mapped, by_lid}


async def test_history_after_linking_is_stored_without_events(api: Api, driver: Driver) -> None:
    """What WhatsApp hands over after linking (Baileys' `messaging-history.set`; for
    whatsapp-web.js what its bridge reads off the page once ready) is stored as history:
    the chat and its messages, with no `message.received`. whatsmeow's history sync has
    its own test (`test_whatsmeow_events.py`); the mock has none."""
    if "history" not in driver.kinds:
        pytest.skip(f"{driver.engine} is not driven through a history sync here")
    session_id = await linked(api, driver)
    chat_id = f"{SENDER}@s.whatsapp.net"
    items = [
        {"id": "3EB0HISTORY0001", "text": "hi there", "fromMe": False},
        {"id": "3EB0HISTORY0002", "text": "see you", "fromMe": True},
    ]
    body = {"kind": "history", "from": SENDER, "name": "Ann", "messages": items}
    await driver.report(api, session_id, body)
    history = await wait_for(
        lambda: api.request("GET", f"/api/sessions/{session_id}/chats/{chat_id}/messages"),
        lambda r: len(r.json()["data"]) == 2,
        20,
        "synced history",
    )
    stored = {(m["id"], m["text"], m["fromMe"]) for m in history.json()["data"]}
    assert stored == {(i["id"], i["text"], i["fromMe"]) for i in items}
    assert await logged(api, session_id, "message.received") == []


# What WhatsApp reports besides messages and acks: edits, votes, reads on the phone,
# presence, calls, chat and group changes, messages we cannot translate.


async def test_edits_votes_phone_reads_and_announcements(api: Api, driver: Driver) -> None:
    session_id = await linked(api, driver)
    message_id = await driver.receive_text(api, session_id, SENDER, "first")
    chat_id = f"{SENDER}@s.whatsapp.net"
    await wait_logged(api, session_id, "message.received", id=message_id)
    at = {"from": SENDER}

    await driver.report(
        api, session_id, {"kind": "edit", "messageId": message_id, "text": "second", **at}
    )
    edited = await wait_logged(api, session_id, "message.edited", id=message_id)
    assert (edited["data"]["text"], edited["data"]["from"]) == ("second", chat_id)
    stored = await message(api, session_id, message_id)
    assert stored["text"] == "second"
    assert [e["text"] for e in stored["edits"]] == ["first"]

    if "poll_vote" in driver.kinds:
        vote = {"kind": "poll_vote", "pollId": message_id, "selected": ["yes"], **at}
        await driver.report(api, session_id, vote)
        voted = await wait_logged(api, session_id, "message.poll_vote", pollId=message_id)
        assert voted["data"]["selected"] == ["yes"]

    read = {"kind": "read_self", "chatId": chat_id, "messageIds": [message_id]}
    await driver.report(api, session_id, read)
    await wait_logged(api, session_id, "message.ack", id=message_id, status="read")
    chats = await api.request("GET", f"/api/sessions/{session_id}/chats")
    assert chats.json()["data"][0]["unreadCount"] == 0

    await driver.report(api, session_id, {"kind": "presence", "presence": "composing", **at})
    await wait_logged(api, session_id, "presence.update", chatId=chat_id, presence="composing")
    await driver.report(api, session_id, {"kind": "call", "isVideo": True, **at})
    await wait_logged(api, session_id, "call.received", isVideo=True)
    timer = {"kind": "chat_update", "chatId": chat_id, "ephemeralSeconds": 86400}
    await driver.report(api, session_id, timer)
    await wait_logged(api, session_id, "chat.update", ephemeralSeconds=86400)
    group = "120363000000000042@g.us"
    subject = {"kind": "group_update", "groupId": group, "action": "subject", "value": "Team"}
    await driver.report(api, session_id, subject)
    await wait_logged(api, session_id, "group.update", groupId=group, value="Team")

    unknown_id = await driver.report(
        api, session_id, {"kind": "unknown", "rawType": "futureMessage", **at}
    )
    unknown = await wait_logged(api, session_id, "message.unknown", id=unknown_id)
    assert unknown["data"]["rawType"]  # the engine's own name (the mock's: as asked)
    assert (await message(api, session_id, str(unknown_id)))["type"] == "unknown"
    everything = await logged(api, session_id, "*")
    assert unknown_id not in [e["data"].get("id") for e in everything]

    await driver.report(api, session_id, {"kind": "revoke", "messageId": message_id, **at})
    await wait_logged(api, session_id, "message.revoked", id=message_id)
    assert (await message(api, session_id, message_id))["revoked"] is True


# ---------------------------------------------------------------------------------------
# What an engine cannot do: `GET /api/engines` says it, and the routes answer 501 with
# the engine and the capability, from the same set.


async def test_capabilities_are_what_engines_says_and_what_the_routes_answer(
    api: Api, driver: Driver
) -> None:
    listed = await api.request("GET", "/api/engines")
    engines = {e["name"]: e for e in listed.json()["data"]}
    mine = engines[driver.engine]
    assert mine["available"] is True, mine
    session_id = await started(api, driver)
    scan = await api.request("POST", f"/api/sessions/{session_id}/mock/scan")
    if "mock_control" in mine["capabilities"]:
        assert scan.status_code != 501, scan.text
    else:
        assert scan.status_code == 501, scan.text
        error = scan.json()["error"]
        assert error["code"] == "NOT_SUPPORTED"
        assert error["details"] == {"engine": driver.engine, "capability": "mock_control"}
