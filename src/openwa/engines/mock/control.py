"""The mock engine's control routes (`/mock/...`): scan, disconnect, inbound, report,
LIDs, transmitted.

They drive the simulated network of a mock session, so they belong to the mock engine,
not to the session use cases; they answer 501 for sessions of any other engine.
"""

from __future__ import annotations

import asyncio
from typing import Any

from openwa.db.models import SessionRow
from openwa.engines.base import (
    ContactUpdated,
    InboundMedia,
    MessageReceived,
    PairingNotAvailable,
    SendFailed,
)
from openwa.engines.mock.engine import MockClient, MockEngine
from openwa.engines.mock.reports import MockReport, MockReportResult, engine_report
from openwa.engines.mock.store import MockNetworkStore
from openwa.engines.registry import EngineRegistry
from openwa.errors import (
    InvalidChatId,
    NotSupported,
    QrNotAvailable,
    SessionNotFound,
    SessionNotReady,
    ValidationFailed,
)
from openwa.kit.chat_ids import normalize_chat_id, phone_of
from openwa.media.ingest import StagedMedia
from openwa.messages.schemas import MockInbound, MockLid, MockLidResult, Transmission
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.runtime import SessionRuntime
from openwa.sessions.schemas import Session
from openwa.sessions.service import to_schema


class MockControl:
    def __init__(
        self, directory: SessionDirectory, runtime: SessionRuntime, engines: EngineRegistry
    ) -> None:
        self._directory = directory
        self._runtime = runtime
        self._engines = engines

    def _session(self, session_id: str) -> Session:
        row = self._row(session_id)
        return to_schema(row)

    def _row(self, session_id: str) -> SessionRow:
        row = self._directory.get(session_id)
        if row is None:
            raise SessionNotFound(details={"session": session_id})
        return row

    async def mock_scan(self, session_id: str) -> Session:
        client = await self._mock_client(session_id)
        try:
            await client.scan()
        except PairingNotAvailable as exc:
            raise QrNotAvailable(str(exc)) from exc
        return self._session(session_id)

    async def mock_disconnect(self, session_id: str, reason: str | None) -> Session:
        client = await self._mock_client(session_id)
        await client.drop(reason or "connection dropped by mock/disconnect")
        return self._session(session_id)

    async def mock_inbound(
        self, session_id: str, body: MockInbound, media: StagedMedia | None
    ) -> str:
        """The staged media is removed however this ends (a session not ready included)."""
        try:
            return await self._mock_inbound(session_id, body, media)
        finally:
            if media is not None:
                media.discard()

    async def _mock_inbound(
        self, session_id: str, body: MockInbound, media: StagedMedia | None
    ) -> str:
        client = await self._mock_client(session_id)
        content: dict[str, Any] = {}
        if body.text is not None:
            content["text"] = body.text
        inbound = None
        if media is not None:
            data = await asyncio.to_thread(media.path.read_bytes)
            inbound = InboundMedia(media.mimetype, media.size, media.filename, data=data)
        sender = normalize_chat_id(body.from_)
        if body.from_lid is not None and phone_of(sender) is None:
            raise ValidationFailed(
                "fromLid goes with a phone-number from", details={"from": sender}
            )
        chat_id = normalize_chat_id(body.chat_id) if body.chat_id is not None else None
        try:
            return await client.inbound(
                sender, body.type, content, inbound, sender_lid=body.from_lid, chat_id=chat_id
            )
        except SendFailed as exc:
            raise SessionNotReady(str(exc)) from exc

    async def mock_lid(self, session_id: str, body: MockLid) -> MockLidResult:
        client = await self._mock_client(session_id)
        contact_id = normalize_chat_id(body.phone_number)
        if phone_of(contact_id) is None:
            raise InvalidChatId("not a phone number", details={"phoneNumber": body.phone_number})
        try:
            await client.report(ContactUpdated(contact_id, push_name=body.push_name, lid=body.lid))
        except SendFailed as exc:
            raise SessionNotReady(str(exc)) from exc
        return MockLidResult(contact_id=contact_id, lid=body.lid)

    async def mock_report(self, session_id: str, body: MockReport) -> MockReportResult:
        """Make the mock report `body` as a real engine would (an edit, a vote, ...)."""
        report = engine_report(body)
        client = await self._mock_client(session_id)
        try:
            await client.report(report)
        except SendFailed as exc:
            raise SessionNotReady(str(exc)) from exc
        message_id = report.id if isinstance(report, MessageReceived) else None
        return MockReportResult(kind=body.kind, id=message_id)

    async def mock_transmitted(self, session_id: str, limit: int) -> list[Transmission]:
        row = self._row(session_id)
        self._require_mock(row)
        store = self._mock_store()
        items = await store.transmissions(session_id, limit)
        return [Transmission.model_validate(item) for item in items]

    def _mock_store(self) -> MockNetworkStore:
        engine = self._engines.get("mock")
        assert isinstance(engine, MockEngine)
        return engine.network.store

    @staticmethod
    def _require_mock(row: SessionRow) -> None:
        if row.engine != "mock":
            raise NotSupported(
                "mock control is served only for mock sessions",
                details={"engine": row.engine, "capability": "mock_control"},
            )

    async def _mock_client(self, session_id: str) -> MockClient:
        row = self._row(session_id)
        self._require_mock(row)
        self._runtime.require_here(session_id)
        client = self._runtime.client(session_id)
        if not isinstance(client, MockClient):
            raise SessionNotReady("the session is not running", details={"status": row.status})
        return client
