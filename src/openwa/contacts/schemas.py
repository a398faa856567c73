"""Wire schemas of contacts."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from openwa.kit.schema import CamelModel

CONTACT_ID_EXAMPLE = "6281234567890@s.whatsapp.net"


class Contact(CamelModel):
    id: str = Field(description="The contact's canonical address", examples=[CONTACT_ID_EXAMPLE])
    name: str | None = Field(
        description="The name saved in the account's address book, when the engine reports it",
        examples=["Budi Santoso"],
    )
    push_name: str | None = Field(
        description="The name the contact set for themselves", examples=["Budi"]
    )
    phone_number: str | None = Field(
        description="International digits of a user address; null for other addresses",
        examples=["6281234567890"],
    )
    lid: str | None = Field(
        default=None,
        description="The WhatsApp LID this phone number is also known by, once the engine "
        "has mapped it (chats under it were merged into this contact's)",
        examples=["123456789012345@lid"],
    )
    updated_at: datetime = Field(examples=["2026-11-26T10:00:00.000Z"])


class PresenceSubscribed(CamelModel):
    contact_id: str = Field(examples=[CONTACT_ID_EXAMPLE])
    subscribed: bool = True


class ProfilePicture(CamelModel):
    url: str | None = Field(
        description="Where the picture can be downloaded (short-lived); null when there is none",
        examples=["https://pps.whatsapp.net/v/t61.24694-24/123_456.jpg"],
    )


class NumberCheck(CamelModel):
    phone_number: str = Field(
        description="The number checked, as international digits", examples=["6281234567890"]
    )
    exists: bool = Field(description="Whether the number is on WhatsApp", examples=[True])
    chat_id: str | None = Field(
        description="Its user address when it exists, else null", examples=[CONTACT_ID_EXAMPLE]
    )
