"""Contacts: the session's directory, profile pictures, and checking a number."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from openwa.api.deps import PageDep, ReadDbDep, ServicesDep, SessionDep, WriterDep
from openwa.api.envelope import Envelope, PageEnvelope, ok, paged
from openwa.api.responses import CONTACT_NOT_FOUND, ENGINE_CALL, errors
from openwa.api.routing import api_router
from openwa.contacts.schemas import (
    CONTACT_ID_EXAMPLE,
    Contact,
    NumberCheck,
    PresenceSubscribed,
    ProfilePicture,
)

router = api_router("/api/sessions/{id}/contacts", ["contacts"])

# A contact id holds an `@`; it may come URL-encoded (`%40`) or not, both reach the route.
ContactId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        description="The contact: a phone number or a user address",
        examples=[CONTACT_ID_EXAMPLE],
    ),
]
PhoneNumber = Annotated[
    str,
    Path(
        min_length=1,
        max_length=32,
        description="A phone number in international form (`+`, spaces and dashes allowed)",
        examples=["+62 812-3456-7890"],
    ),
]


@router.get("")
async def list_contacts(
    session: SessionDep, services: ServicesDep, page: PageDep, db: ReadDbDep
) -> PageEnvelope[Contact]:
    """List the contacts the session knows from its chats, by address."""
    items, total = await services.contacts.page(db, session.id, page)
    return paged(items, page, total)


# Before `/{contact_id}...`, so that `check/...` is never taken for a contact id.
@router.get("/check/{phone_number}", responses=errors(*ENGINE_CALL))
async def check_number(
    phone_number: PhoneNumber, session: SessionDep, services: ServicesDep
) -> Envelope[NumberCheck]:
    """Whether a phone number is on WhatsApp, with its user address when it is."""
    return ok(await services.contacts.check(session, phone_number))


@router.get("/{contact_id}", responses=errors(CONTACT_NOT_FOUND))
async def get_contact(
    contact_id: ContactId, session: SessionDep, services: ServicesDep, db: ReadDbDep
) -> Envelope[Contact]:
    """One contact of the session's directory."""
    return ok(await services.contacts.get(db, session.id, contact_id))


@router.get(
    "/{contact_id}/profile-picture",
    responses=errors(*ENGINE_CALL),
)
async def contact_profile_picture(
    contact_id: ContactId, session: SessionDep, services: ServicesDep
) -> Envelope[ProfilePicture]:
    """The URL of the contact's profile picture; `url` is null when there is none."""
    return ok(await services.contacts.profile_picture(session, contact_id))


@router.post("/{contact_id}/presence", responses=errors(*ENGINE_CALL))
async def subscribe_contact_presence(
    contact_id: ContactId, _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[PresenceSubscribed]:
    """Follow the contact's presence: `presence.update` events (online, offline with
    last seen, typing) while the session stays connected and shows itself online
    (`markOnline`); WhatsApp forgets the request when the connection ends."""
    return ok(await services.contacts.subscribe_presence(session, contact_id))
