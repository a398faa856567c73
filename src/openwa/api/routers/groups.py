"""Groups: list, create, read and change groups, their members, invite link, leaving."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from openwa.api.deps import PageDep, ReadDbDep, ServicesDep, SessionDep, WriterDep
from openwa.api.envelope import Envelope, PageEnvelope, ok, paged
from openwa.api.responses import ENGINE_CALL, errors
from openwa.api.routing import api_router
from openwa.errors import InvalidChatId
from openwa.groups.schemas import (
    GROUP_ID_EXAMPLE,
    Group,
    GroupCreate,
    GroupLeft,
    GroupParticipantsUpdate,
    GroupUpdate,
    InviteCode,
    ParticipantResult,
)

router = api_router("/api/sessions/{id}/groups", ["groups"])

GroupId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        description="The group address (`...@g.us`); anything else is INVALID_CHAT_ID",
        examples=[GROUP_ID_EXAMPLE],
    ),
]


@router.get("", responses=errors(*ENGINE_CALL))
async def list_groups(
    session: SessionDep, services: ServicesDep, page: PageDep, read: ReadDbDep
) -> PageEnvelope[Group]:
    """List the groups the session's account is in, oldest first."""
    items, total = await services.groups.page(read, session, page)
    return paged(items, page, total)


@router.post(
    "",
    status_code=201,
    responses=errors(*ENGINE_CALL, InvalidChatId),
)
async def create_group(
    body: GroupCreate, _: WriterDep, session: SessionDep, services: ServicesDep, read: ReadDbDep
) -> Envelope[Group]:
    """Create a group with the given participants; the session's account owns it."""
    return ok(await services.groups.create(read, session, body))


@router.get(
    "/{group_id}",
    responses=errors(*ENGINE_CALL),
)
async def get_group(
    group_id: GroupId, session: SessionDep, services: ServicesDep, read: ReadDbDep
) -> Envelope[Group]:
    """One group: subject, description, owner, participants with roles, settings."""
    return ok(await services.groups.get(read, session, group_id))


@router.patch(
    "/{group_id}",
    responses=errors(*ENGINE_CALL),
)
async def update_group(
    group_id: GroupId,
    body: GroupUpdate,
    _: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    read: ReadDbDep,
) -> Envelope[Group]:
    """Change the subject, description or settings (admins only); the group as it is now."""
    return ok(await services.groups.update(read, session, group_id, body))


@router.post(
    "/{group_id}/participants",
    responses=errors(*ENGINE_CALL),
)
async def change_participants(
    group_id: GroupId,
    body: GroupParticipantsUpdate,
    _: WriterDep,
    session: SessionDep,
    services: ServicesDep,
    read: ReadDbDep,
) -> Envelope[list[ParticipantResult]]:
    """Add, remove, promote or demote participants (admins only); a status per participant."""
    return ok(await services.groups.change_participants(read, session, group_id, body))


@router.get(
    "/{group_id}/invite-code",
    responses=errors(*ENGINE_CALL),
)
async def invite_code(
    group_id: GroupId, session: SessionDep, services: ServicesDep
) -> Envelope[InviteCode]:
    """The group's invite code and `https://chat.whatsapp.com/` link (admins only)."""
    return ok(await services.groups.invite_code(session, group_id))


@router.post(
    "/{group_id}/leave",
    responses=errors(*ENGINE_CALL),
)
async def leave_group(
    group_id: GroupId, _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[GroupLeft]:
    """Leave the group; the session's account stops being a participant."""
    return ok(await services.groups.leave(session, group_id))
