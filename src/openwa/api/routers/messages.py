"""Sending and reading messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Request
from fastapi.responses import StreamingResponse

from openwa.api.deps import DbDep, PrincipalDep, ReadDbDep, ServicesDep, SessionDep, WriterDep
from openwa.api.envelope import Envelope, ok
from openwa.api.media_request import download_headers, read_media_request
from openwa.api.request_bodies import alternatives
from openwa.api.responses import MEDIA_NOT_FOUND, errors
from openwa.api.routing import api_router
from openwa.errors import (
    EngineError,
    InvalidChatId,
    MessageNotFound,
    MessageNotPending,
    NotSupported,
    SessionNotReady,
    UnsupportedMediaType,
    WebhookUrlForbidden,
)
from openwa.messages.schemas import (
    ContactMessageCreate,
    LocationMessageCreate,
    MediaMessageCreate,
    MediaUploadFields,
    Message,
    ReactionCreate,
    TextMessageCreate,
)

router = api_router("/api/sessions/{id}/messages", ["messages"])

MessageId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[^\x00-\x1f\x7f/]+$",
        description="WhatsApp message id",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Send again with the same key to get the first answer instead of a resend",
    ),
]
# A send is queued: only a session that will never be ready refuses it at once.
_SEND = (SessionNotReady, InvalidChatId)


@router.post("/text", status_code=202, responses=errors(*_SEND))
async def send_text(
    body: TextMessageCreate,
    principal: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[Message]:
    """Accept a text message into the durable queue (202, `pending`)."""
    return ok(await services.messages.accept_text(session, principal, body, idempotency_key))


@router.get("/{message_id}")
async def get_message(
    message_id: MessageId,
    _: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    db: ReadDbDep,
) -> Envelope[Message]:
    """One message with its current status."""
    return ok(await services.messages.get(db, session.id, message_id))


@router.delete(
    "/{message_id}",
    responses=errors(MessageNotPending, SessionNotReady, EngineError),
)
async def delete_message(
    message_id: MessageId,
    _: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    db: DbDep,
    read: ReadDbDep,
) -> Envelope[Message]:
    """Cancel a `pending` message; revoke a sent one for everyone."""
    services.runtime.require_here(session.id)
    client = services.runtime.client(session.id)
    ready = session.id in services.runtime.ready_sessions()
    message = await services.messages.cancel_or_revoke(
        db, session.id, message_id, client if ready else None, read=read
    )
    return ok(message)


@router.post(
    "/media",
    status_code=202,
    responses=errors(*_SEND, UnsupportedMediaType, WebhookUrlForbidden, NotSupported, EngineError),
    openapi_extra=alternatives(MediaMessageCreate, MediaUploadFields, "file", "MediaUpload"),
)
async def send_media(
    request: Request,
    principal: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[Message]:
    """Accept media from a URL, base64 or a multipart upload (202, `pending`)."""
    fields, staged = await read_media_request(request, services)
    return ok(
        await services.messages.accept_media(session, principal, fields, staged, idempotency_key)
    )


@router.post("/location", status_code=202, responses=errors(*_SEND))
async def send_location(
    body: LocationMessageCreate,
    principal: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[Message]:
    """Accept a location (202, `pending`)."""
    return ok(await services.messages.accept_location(session, principal, body, idempotency_key))


@router.post("/contact", status_code=202, responses=errors(*_SEND))
async def send_contact(
    body: ContactMessageCreate,
    principal: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[Message]:
    """Accept contact cards, sent as vCard 3.0 (202, `pending`)."""
    return ok(await services.messages.accept_contacts(session, principal, body, idempotency_key))


@router.post("/reaction", status_code=202, responses=errors(SessionNotReady, MessageNotFound))
async def send_reaction(
    body: ReactionCreate,
    principal: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[Message]:
    """React to a message (an empty `emoji` removes the reaction)."""
    return ok(await services.messages.accept_reaction(session, principal, body, idempotency_key))


@router.get(
    "/{message_id}/media",
    response_class=StreamingResponse,
    responses={
        **errors(MEDIA_NOT_FOUND),
        200: {"content": {"application/octet-stream": {}}, "description": "The media bytes"},
    },
)
async def get_media(
    message_id: MessageId,
    _: PrincipalDep,
    session: SessionDep,
    services: ServicesDep,
    db: ReadDbDep,
) -> StreamingResponse:
    """The stored media of a message, with its content type (never run by a browser:
    `nosniff`, a sandboxing CSP, and an attachment unless it is plain image/audio/video)."""
    media, chunks = await services.messages.media(db, session.id, message_id)
    mimetype, headers = download_headers(media, message_id)
    return StreamingResponse(chunks, media_type=mimetype, headers=headers)
