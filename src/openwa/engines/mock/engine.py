"""Mock engine: shows a QR, links after `MOCK_AUTH_DELAY_MS`, and keeps its phone number.

Its auth state (the simulated device: phone number and push name) lives in the
`AuthStore` like a real engine's would, so restore after a restart needs no scan.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from typing import Any

from openwa.engines.base import (
    Authenticated,
    Connected,
    Disconnected,
    EngineClient,
    PairingNotAvailable,
    QrUpdated,
    SessionContext,
)

MOCK_CAPABILITIES = frozenset({"qr", "pairing_code", "mock_control"})


def _random_phone() -> str:
    # +1 555 01xx-xxxx style numbers: possible numbers that no real subscriber has.
    return "1555" + "".join(secrets.choice(string.digits) for _ in range(7))


def _pairing_code() -> str:
    alphabet = string.ascii_uppercase + string.digits
    code = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{code[:4]}-{code[4:]}"


class MockClient:
    def __init__(self, context: SessionContext, auth_delay_s: float) -> None:
        self._ctx = context
        self._auth_delay_s = auth_delay_s
        self._link_task: asyncio.Task[None] | None = None
        self._awaiting_link = False

    async def connect(self) -> None:
        state = await self._ctx.auth.load()
        if state and state.get("phoneNumber"):
            await self._ctx.emit(Authenticated(state["phoneNumber"], state.get("pushName")))
            await self._ctx.emit(Connected())
            return
        self._awaiting_link = True
        await self._ctx.emit(
            QrUpdated(f"2@mock,{secrets.token_urlsafe(24)},{self._ctx.session_id}")
        )
        self._schedule_link(_random_phone(), self._auth_delay_s)

    def _schedule_link(self, phone: str, delay_s: float) -> None:
        self._cancel_link()
        self._link_task = asyncio.create_task(self._link_after(phone, delay_s))

    def _cancel_link(self) -> None:
        if self._link_task is not None and self._link_task is not asyncio.current_task():
            self._link_task.cancel()
        self._link_task = None

    async def _link_after(self, phone: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._link(phone)

    async def _link(self, phone: str) -> None:
        self._awaiting_link = False
        state: dict[str, Any] = {"phoneNumber": phone, "pushName": f"Mock {phone[-4:]}"}
        await self._ctx.auth.save(state)
        await self._ctx.emit(Authenticated(state["phoneNumber"], state["pushName"]))
        await self._ctx.emit(Connected())

    async def disconnect(self) -> None:
        self._awaiting_link = False
        self._cancel_link()

    async def logout(self) -> None:
        await self.disconnect()
        await self._ctx.auth.clear()

    async def request_pairing_code(self, phone_number: str) -> str:
        if not self._awaiting_link:
            raise PairingNotAvailable("the session is not waiting to be linked")
        # As if typed on the phone at once: the account links after the usual delay.
        self._schedule_link(phone_number, self._auth_delay_s)
        return _pairing_code()

    # Test and demo control (the `/mock/...` routes).

    async def scan(self) -> None:
        if not self._awaiting_link:
            raise PairingNotAvailable("the session shows no QR code to scan")
        self._cancel_link()
        await self._link(_random_phone())

    async def drop(self, reason: str) -> None:
        await self.disconnect()
        await self._ctx.emit(Disconnected(reason))


class MockEngine:
    name = "mock"
    capabilities = MOCK_CAPABILITIES

    def __init__(self, auth_delay_ms: int = 1500) -> None:
        self._auth_delay_s = auth_delay_ms / 1000

    def client(self, context: SessionContext) -> EngineClient:
        return MockClient(context, self._auth_delay_s)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None
