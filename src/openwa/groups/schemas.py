"""Wire schemas of groups."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StringConstraints, model_validator

from openwa.kit.schema import CamelModel, StrictCamelModel

GROUP_ID_EXAMPLE = "120363025246125486@g.us"
INVITE_LINK_BASE = "https://chat.whatsapp.com/"

Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Participants = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=128)]],
    Field(
        min_length=1,
        max_length=1023,
        description="Phone numbers in international form or user addresses",
        examples=[["+62 812-3456-7890", "6281298765432@s.whatsapp.net"]],
    ),
]
ParticipantAction = Literal["add", "remove", "promote", "demote"]


class GroupParticipant(CamelModel):
    id: str = Field(
        description="The member's address: the phone number's wherever it is known, else "
        "the `...@lid` one",
        examples=["6281234567890@s.whatsapp.net"],
    )
    role: str = Field(description="`member`, `admin` or `superadmin` (the owner)")
    lid: str | None = Field(
        default=None,
        description="The member's LID beside its phone-number address, when known",
        examples=["100000000000001@lid"],
    )


class GroupSettings(CamelModel):
    announce: bool = Field(description="Only admins may send messages", examples=[False])
    restrict: bool = Field(description="Only admins may change the group's info", examples=[False])


class Group(CamelModel):
    id: str = Field(description="The group address", examples=[GROUP_ID_EXAMPLE])
    subject: str = Field(examples=["Sales team"])
    description: str | None = Field(default=None, examples=["Leads and follow-ups"])
    owner: str | None = Field(
        default=None,
        description="Address of the account that created the group",
        examples=["6281234567890@s.whatsapp.net"],
    )
    participants: list[GroupParticipant]
    settings: GroupSettings
    created_at: datetime | None = None


class GroupCreate(StrictCamelModel):
    name: Subject = Field(description="The group's subject, 1 to 100 characters")
    participants: Participants


class GroupSettingsUpdate(StrictCamelModel):
    announce: StrictBool | None = Field(default=None, description="Only admins may send")
    restrict: StrictBool | None = Field(default=None, description="Only admins may edit info")


class GroupUpdate(StrictCamelModel):
    subject: Subject | None = Field(default=None, examples=["Sales team (EMEA)"])
    description: str | None = Field(
        default=None,
        max_length=2048,
        description="The new description; an empty string removes it",
        examples=["Leads and follow-ups"],
    )
    settings: GroupSettingsUpdate | None = Field(default=None, examples=[{"announce": True}])

    @model_validator(mode="after")
    def _something_to_change(self) -> GroupUpdate:
        settings = self.settings
        if settings is not None and settings.announce is None and settings.restrict is None:
            self.settings = None
        if self.subject is None and self.description is None and self.settings is None:
            raise ValueError("give at least one of subject, description, settings")
        return self


class GroupParticipantsUpdate(StrictCamelModel):
    action: ParticipantAction = Field(examples=["add"])
    participants: Participants


class ParticipantResult(CamelModel):
    id: str = Field(
        description="The participant's address", examples=["6281234567890@s.whatsapp.net"]
    )
    status: str = Field(
        description=(
            "`ok`, or why not: `not_found`, `not_member`, `already_member`, `not_allowed` "
            "(the owner cannot be removed or demoted; their privacy settings refuse; they "
            "left recently; the group is full); a code WhatsApp gave that has no word "
            "here is `error_<code>`"
        ),
        examples=["ok"],
    )


class InviteCode(CamelModel):
    code: str = Field(examples=["E4kL0aBcD9xYz1QwErTy"])
    link: str = Field(examples=[INVITE_LINK_BASE + "E4kL0aBcD9xYz1QwErTy"])


class GroupLeft(CamelModel):
    id: str = Field(description="The group address", examples=[GROUP_ID_EXAMPLE])
    left: Literal[True] = True
