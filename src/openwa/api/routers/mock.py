"""Test and demo control of mock sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Query

from openwa.api.deps import PrincipalDep, ServicesDep, SessionDep, WriterDep
from openwa.api.envelope import Envelope, ok
from openwa.api.responses import errors
from openwa.api.routing import api_router
from openwa.engines.mock.reports import MockReport, MockReportResult
from openwa.errors import (
    InvalidChatId,
    NotSupported,
    QrNotAvailable,
    SessionNotReady,
    UnsupportedMediaType,
    ValidationFailed,
    WebhookUrlForbidden,
)
from openwa.media.types import ALLOWED
from openwa.messages.schemas import (
    MockInbound,
    MockInboundResult,
    MockLid,
    MockLidResult,
    Transmission,
)
from openwa.sessions.schemas import MockDisconnect, Session

router = api_router("/api/sessions/{id}/mock", ["mock engine"])


@router.post(
    "/scan",
    responses=errors(QrNotAvailable, SessionNotReady, NotSupported),
)
async def mock_scan(_: WriterDep, session: SessionDep, services: ServicesDep) -> Envelope[Session]:
    """Link now instead of waiting MOCK_AUTH_DELAY_MS."""
    return ok(await services.mock_control.mock_scan(session.id))


@router.post("/disconnect", responses=errors(SessionNotReady, NotSupported))
async def mock_disconnect(
    _: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    body: Annotated[MockDisconnect | None, Body()] = None,
) -> Envelope[Session]:
    """Drop the connection; the session reconnects by itself."""
    reason = body.reason if body else None
    return ok(await services.mock_control.mock_disconnect(session.id, reason))


@router.post(
    "/inbound",
    status_code=202,
    responses=errors(
        SessionNotReady,
        NotSupported,
        InvalidChatId,
        ValidationFailed,
        UnsupportedMediaType,
        WebhookUrlForbidden,
    ),
)
async def mock_inbound(
    body: MockInbound, _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[MockInboundResult]:
    """Deliver an inbound message to the session, as if sent from `from` (a LID when
    the engine could not map it; `fromLid` beside a phone number when it could)."""
    media = None
    if body.media is not None:
        media = await services.media_ingest.from_source(
            body.type if body.type in ALLOWED else "document", body.media
        )
    message_id = await services.mock_control.mock_inbound(session.id, body, media)
    return ok(MockInboundResult(id=message_id))


@router.post(
    "/lid", status_code=202, responses=errors(SessionNotReady, NotSupported, InvalidChatId)
)
async def mock_lid(
    body: MockLid, _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[MockLidResult]:
    """Report that WhatsApp's LID `lid` is `phoneNumber`, as an engine does once it learns
    it: chats stored under the LID merge into the phone number's (`contact.update`)."""
    return ok(await services.mock_control.mock_lid(session.id, body))


@router.post(
    "/report",
    status_code=202,
    responses=errors(SessionNotReady, NotSupported, InvalidChatId),
)
async def mock_report(
    body: MockReport, _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[MockReportResult]:
    """Make the mock network report something (by `kind`): a contact's edit, revoke, poll
    vote, presence or call; a read on the account's phone; a chat's or group's change;
    WhatsApp's server refusing a sent message; a message of a type it cannot translate
    (`unknown`, answered with its `id`). Mock sessions only."""
    return ok(await services.mock_control.mock_report(session.id, body))


@router.get("/transmitted", responses=errors(NotSupported))
async def mock_transmitted(
    _: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> Envelope[list[Transmission]]:
    """The mock's durable log of what this session transmitted, oldest first."""
    return ok(await services.mock_control.mock_transmitted(session.id, limit))
