"""Sending and reading messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path

from openwa.api.deps import PrincipalDep, ServicesDep, SessionDep, WriterDep
from openwa.api.envelope import Envelope, ok
from openwa.api.responses import errors
from openwa.messages.schemas import Message, TextMessageCreate

router = APIRouter(prefix="/api/sessions/{id}/messages", tags=["messages"])

MessageId = Annotated[str, Path(min_length=1, max_length=128, description="WhatsApp message id")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Send again with the same key to get the first answer instead of a resend",
    ),
]
_NOT_READY = ("SESSION_NOT_READY", "Session is not ready")


@router.post(
    "/text",
    status_code=202,
    responses=errors(403, 404, 409, s409=_NOT_READY),
)
async def send_text(
    body: TextMessageCreate,
    principal: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[Message]:
    """Accept a text message into the durable queue (202, `pending`)."""
    return ok(await services.messages.accept_text(session, principal, body, idempotency_key))


@router.get("/{message_id}", responses=errors(403, 404))
async def get_message(
    message_id: MessageId, _: PrincipalDep, session: SessionDep, services: ServicesDep
) -> Envelope[Message]:
    """One message with its current status."""
    return ok(await services.messages.get(session.id, message_id))


@router.delete(
    "/{message_id}",
    responses=errors(403, 404, 409, 501, s409=("MESSAGE_NOT_PENDING", "No longer pending")),
)
async def delete_message(
    message_id: MessageId, _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[Message]:
    """Cancel a message that is still `pending` (scheduled or waiting for its session)."""
    return ok(await services.messages.cancel_or_revoke(session.id, message_id))
