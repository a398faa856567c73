"""Chats: the list and a chat's history (stored messages), mark read, typing."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Path

from openwa.api.deps import DbDep, PageDep, ReadDbDep, ServicesDep, SessionDep, WriterDep
from openwa.api.envelope import Envelope, PageEnvelope, ok, paged
from openwa.api.responses import ENGINE_CALL, errors
from openwa.api.routing import api_router
from openwa.chats.schemas import CHAT_ID_EXAMPLE, Chat, ChatRead, Presence, PresenceUpdate
from openwa.messages.schemas import Message

router = api_router("/api/sessions/{id}/chats", ["chats"])

# A chat id holds an `@`; it may come URL-encoded (`%40`) or not, both reach the route.
ChatId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        description="The chat: a phone number, a user address or a group address",
        examples=[CHAT_ID_EXAMPLE],
    ),
]


@router.get("")
async def list_chats(
    session: SessionDep, services: ServicesDep, page: PageDep, db: ReadDbDep
) -> PageEnvelope[Chat]:
    """List the session's chats from its stored messages, newest activity first."""
    items, total = await services.chats.page(db, session.id, page)
    return paged(items, page, total)


@router.get("/{chat_id}/messages")
async def chat_messages(
    chat_id: ChatId, session: SessionDep, services: ServicesDep, page: PageDep, db: ReadDbDep
) -> PageEnvelope[Message]:
    """The chat's stored messages, newest first."""
    items, total = await services.chats.history(db, session.id, chat_id, page)
    return paged(items, page, total)


@router.post("/{chat_id}/read", responses=errors(*ENGINE_CALL))
async def mark_chat_read(
    chat_id: ChatId,
    _: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    db: DbDep,
    read: ReadDbDep,
) -> Envelope[ChatRead]:
    """Mark the chat's unread inbound messages read (blue ticks to their senders)."""
    return ok(await services.chats.mark_read(db, session, chat_id, read=read))


@router.post("/{chat_id}/typing", responses=errors(*ENGINE_CALL))
async def set_chat_presence(
    chat_id: ChatId,
    _: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    body: Annotated[PresenceUpdate | None, Body()] = None,
) -> Envelope[Presence]:
    """Show `typing` (the default) or `recording` in the chat, or stop with `paused`."""
    state = body.state if body is not None else "typing"
    return ok(await services.chats.set_presence(session, chat_id, state))
