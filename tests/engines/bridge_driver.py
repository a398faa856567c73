"""The behavioural module's driver for the bridge engines (Baileys, whatsapp-web.js):
the real bridge runs the real library, its dial held by a silent loopback proxy, and
WhatsApp's part is played by the libraries' own event shapes handed to the engine's
client as the bridge forwards them (docs/bridge.md)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from openwa.engines.bridge.engine import BridgeClient
from tests.engines.proxies import SilentProxy
from tests.fixtures.app import Api, wait_for
from tests.sessions.support import auth_rows

PHONE = "15550100001"


def _id() -> str:
    return "3EB0" + secrets.token_hex(8).upper()


class BridgeDriver:
    def __init__(self, engine: str, proxy: SilentProxy) -> None:
        self.engine = engine
        self.proxy = proxy
        self.kinds = frozenset(
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
            if engine == "baileys"
            else {"edit", "revoke", "read_self", "call", "group_update", "unknown"}
        ) | {"history"}

    def settings(self) -> dict[str, Any]:
        return {}

    def config(self) -> dict[str, Any]:
        return {"proxy": self.proxy.url}

    async def _client(self, api: Api, session_id: str) -> BridgeClient:
        async def running() -> Any:
            return api.services.runtime.client(session_id)

        client = await wait_for(running, lambda c: c is not None, 20, "the session's client")
        assert isinstance(client, BridgeClient)
        return client

    async def _frame(self, api: Api, session_id: str, name: str, data: Any) -> None:
        client = await self._client(api, session_id)
        await client.on_frame(
            {"v": 1, "kind": "event", "session": session_id, "name": name, "data": data}
        )

    async def show_qr(self, api: Api, session_id: str) -> None:
        qr = "2@behaviour,qr,code"
        if self.engine == "baileys":
            await self._frame(api, session_id, "connection.update", {"qr": qr})
        else:
            await self._frame(api, session_id, "qr", {"qr": qr})

    async def scan(self, api: Api, session_id: str) -> None:
        if self.engine == "baileys":
            # The bridge reported the new device's creds at start; a scan adds `me`.
            client = await self._client(api, session_id)
            (row,) = await wait_for(lambda: auth_rows(api, session_id), bool, 20, "the creds")
            me = {"id": f"{PHONE}:3@s.whatsapp.net", "name": "Me"}
            creds = {**row.data["creds"], "me": me}
            await client.on_frame({"v": 1, "kind": "auth", "session": session_id, "creds": creds})
        await self.back(api, session_id)

    async def drop(self, api: Api, session_id: str) -> None:
        if self.engine == "baileys":
            lost = {"connection": "close", "lastDisconnect": {"statusCode": 408, "message": "lost"}}
            await self._frame(api, session_id, "connection.update", lost)
        else:
            await self._frame(api, session_id, "disconnected", {"reason": "NAVIGATION"})

    async def back(self, api: Api, session_id: str) -> None:
        if self.engine == "baileys":
            await self._frame(api, session_id, "connection.update", {"connection": "open"})
        else:
            info = {"wid": {"_serialized": f"{PHONE}@c.us"}, "pushname": "Me"}
            await self._frame(api, session_id, "ready", {"info": info})

    async def _message(
        self,
        api: Api,
        session_id: str,
        chat: str,
        message: dict[str, Any],
        body: str = "",
        known: dict[str, str] | None = None,
    ) -> str:
        """`known`: what the bridge learned of the sender's other address (Baileys: off
        the message's stanza; whatsapp-web.js: LID -> number, from the page)."""
        message_id = _id()
        if self.engine == "baileys":
            info = {
                "key": {"remoteJid": chat, "fromMe": False, "id": message_id},
                "message": message,
                "messageTimestamp": 1_764_000_000,
                "pushName": "Ann",
            }
            upsert: dict[str, Any] = {"type": "notify", "messages": [info]}
            if known is not None:
                upsert["addressing"] = {message_id: known}
            await self._frame(api, session_id, "messages.upsert", upsert)
        else:
            user = chat.replace("@s.whatsapp.net", "@c.us")
            data = {
                "id": {"fromMe": False, "remote": user, "id": message_id},
                "type": message.get("type", "chat"),
                "body": body,
                "timestamp": 1_764_000_000,
                "from": user,
                "to": f"{PHONE}@c.us",
                "fromMe": False,
                "_data": {"notifyName": "Ann"},
            }
            frame: dict[str, Any] = {"message": data}
            if known is not None:
                frame["lids"] = known
            await self._frame(api, session_id, "message", frame)
        return message_id

    async def receive_text(self, api: Api, session_id: str, phone: str, text: str) -> str:
        chat = f"{phone}@s.whatsapp.net"
        return await self._message(api, session_id, chat, {"conversation": text}, body=text)

    async def receive_by_lid(
        self, api: Api, session_id: str, lid: str, text: str, phone: str | None = None
    ) -> str:
        # Neither library has the phone number in a LID message itself: the Baileys
        # bridge reads the one WhatsApp wrote on the stanza, the whatsapp-web.js bridge
        # asks the page; each hands it over with the message.
        known: dict[str, str] | None = None
        if phone is not None and self.engine == "baileys":
            known = {"sender_pn": f"{phone}@s.whatsapp.net"}
        elif phone is not None:
            known = {lid: f"{phone}@c.us"}
        return await self._message(
            api, session_id, lid, {"conversation": text}, body=text, known=known
        )

    async def report(self, api: Api, session_id: str, body: dict[str, Any]) -> str | None:
        kind = body["kind"]
        if kind not in self.kinds:
            pytest.skip(f"{self.engine} cannot be made to report {kind} offline")
        chat = f"{body.get('from', '')}@s.whatsapp.net"
        if kind == "history":
            await self._history(api, session_id, chat, body)
            return None
        if self.engine == "webjs":
            return await self._webjs_report(api, session_id, body, chat)
        if kind == "unknown":
            return await self._message(api, session_id, chat, {body["rawType"]: {}})
        if kind in ("edit", "revoke"):
            protocol: dict[str, Any] = {"key": {"remoteJid": chat, "id": body["messageId"]}}
            if kind == "edit":
                protocol |= {"type": 14, "editedMessage": {"conversation": body["text"]}}
            else:
                protocol |= {"type": 0}
            await self._message(api, session_id, chat, {"protocolMessage": protocol})
            return None
        events: dict[str, tuple[str, Any]] = {
            "read_self": (
                "messages.update",
                [
                    {
                        "key": {"remoteJid": body.get("chatId"), "id": i, "fromMe": False},
                        "update": {"status": 4},
                    }
                    for i in body.get("messageIds", [])
                ],
            ),
            "presence": (
                "presence.update",
                {"id": chat, "presences": {chat: {"lastKnownPresence": body.get("presence")}}},
            ),
            "call": (
                "call",
                [
                    {
                        "id": _id(),
                        "from": chat,
                        "status": "offer",
                        "isVideo": body.get("isVideo"),
                        "date": 1_764_000_000,
                    }
                ],
            ),
            "chat_update": (
                "chats.update",
                [{"id": body.get("chatId"), "ephemeralExpiration": body.get("ephemeralSeconds")}],
            ),
            "group_update": (
                "groups.update",
                [{"id": body.get("groupId"), "subject": body.get("value")}],
            ),
        }
        name, data = events[kind]
        await self._frame(api, session_id, name, data)
        return None

    async def _history(self, api: Api, session_id: str, chat: str, body: dict[str, Any]) -> None:
        """Baileys' own `messaging-history.set`; for whatsapp-web.js, what its bridge
        reads off the page once the session is ready (`history`: chats, then messages)."""
        items = body["messages"]
        if self.engine == "baileys":
            messages = [
                {
                    "key": {"remoteJid": chat, "fromMe": item["fromMe"], "id": item["id"]},
                    "message": {"conversation": item["text"]},
                    "messageTimestamp": 1_764_000_000 + i,
                }
                for i, item in enumerate(items)
            ]
            data = {"messages": messages, "isLatest": True, "syncType": 0}
            await self._frame(api, session_id, "messaging-history.set", data)
            return
        user = chat.replace("@s.whatsapp.net", "@c.us")
        listed = {"id": user, "name": body.get("name"), "archived": True, "isGroup": False}
        await self._frame(api, session_id, "history", {"chats": [listed], "messages": []})
        messages = [
            {
                "id": {"fromMe": item["fromMe"], "remote": user, "id": item["id"]},
                "type": "chat",
                "body": item["text"],
                "timestamp": 1_764_000_000 + i,
                "from": f"{PHONE}@c.us" if item["fromMe"] else user,
                "to": user if item["fromMe"] else f"{PHONE}@c.us",
                "fromMe": item["fromMe"],
                "_data": {},
            }
            for i, item in enumerate(items)
        ]
        await self._frame(api, session_id, "history", {"chats": [], "messages": messages})

    async def _webjs_report(
        self, api: Api, session_id: str, body: dict[str, Any], chat: str
    ) -> str | None:
        kind = body["kind"]
        user = chat.replace("@s.whatsapp.net", "@c.us")
        if kind == "unknown":
            return await self._message(api, session_id, chat, {"type": body["rawType"]})
        target = {"fromMe": False, "remote": user, "id": body.get("messageId")}
        message = {
            "id": target,
            "from": user,
            "to": f"{PHONE}@c.us",
            "fromMe": False,
            "type": "chat",
        }
        if kind == "edit":
            await self._frame(
                api,
                session_id,
                "message_edit",
                {"message": message, "newBody": body["text"], "prevBody": ""},
            )
        elif kind == "revoke":
            await self._frame(
                api,
                session_id,
                "message_revoke_everyone",
                {"message": {**message, "type": "revoked"}, "revokedMessage": message},
            )
        elif kind == "read_self":
            # the chat's unread count fell to zero; the bridge names what came since
            where = {"id": str(body.get("chatId")).replace("@s.whatsapp.net", "@c.us")}
            read = {"chat": {**where, "unreadCount": 0}, "readIds": body.get("messageIds")}
            await self._frame(api, session_id, "unread_count", read)
        elif kind == "call":
            call = {
                "id": _id(),
                "from": user,
                "isVideo": body.get("isVideo"),
                "isGroup": False,
                "timestamp": 1_764_000_000,
            }
            await self._frame(api, session_id, "call", {"call": call})
        else:
            note = {
                "chatId": body.get("groupId"),
                "type": "subject",
                "body": body.get("value"),
                "author": user,
                "recipientIds": [],
            }
            await self._frame(api, session_id, "group_update", {"notification": note})
        return None
