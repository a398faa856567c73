"""Test and demo control of mock sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from openwa.api.deps import ServicesDep, SessionDep, WriterDep
from openwa.api.envelope import Envelope, ok
from openwa.api.responses import errors
from openwa.sessions.schemas import MockDisconnect, Session

router = APIRouter(prefix="/api/sessions/{id}/mock", tags=["mock engine"])


@router.post(
    "/scan",
    responses=errors(403, 404, 409, 501, s409=("QR_NOT_AVAILABLE", "No QR code to scan")),
)
async def mock_scan(_: WriterDep, session: SessionDep, services: ServicesDep) -> Envelope[Session]:
    """Link now instead of waiting MOCK_AUTH_DELAY_MS."""
    return ok(await services.sessions.mock_scan(session.id))


@router.post("/disconnect", responses=errors(403, 404, 409, 501))
async def mock_disconnect(
    _: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    body: Annotated[MockDisconnect | None, Body()] = None,
) -> Envelope[Session]:
    """Drop the connection; the session reconnects by itself."""
    reason = body.reason if body else None
    return ok(await services.sessions.mock_disconnect(session.id, reason))
