"""Group members an engine names by LID alone are shown by the number the session knows
them by. Baileys and whatsapp-web.js name the members of a group that addresses them
by LID by it alone; one person was a phone number in `message.received` and a LID in
`GET .../groups/{id}`."""

from __future__ import annotations

import pytest

from openwa.engines.base import ParticipantResult
from openwa.engines.bridge.groups import group_info
from openwa.engines.mock.engine import MockClient
from openwa.groups.service import shown
from tests.fixtures.app import Api, wait_for
from tests.messages.support import data_of, ready_session

GROUP = "120363000000000009@g.us"
CAROL_LID = "100000000000001@lid"
CAROL_ID = "6281234567890@s.whatsapp.net"
DAN_LID = "100000000000002@lid"  # no number known
ERIN_ID = "6281200000005@s.whatsapp.net"


async def learn(api: Api, lid: str, phone_id: str) -> None:
    """Bob's engine maps `lid` to `phone_id`, as an engine reports it: stored a moment
    later."""
    mapped = await api.request(
        "POST", "/api/sessions/bob/mock/lid", json={"lid": lid, "phoneNumber": phone_id}
    )
    data_of(mapped, 202)
    await wait_for(
        lambda: api.request("GET", f"/api/sessions/bob/contacts/{lid}"),
        lambda r: r.status_code == 200,
        20,
        "the mapping stored",
    )


async def test_lid_members_are_shown_by_the_number_the_session_knows(api: Api) -> None:
    bob = await ready_session(api, "bob")
    await learn(api, CAROL_LID, CAROL_ID)
    # A group as Baileys hands it over for a LID-addressed group.
    info = group_info(
        {
            "id": GROUP,
            "subject": "LID group",
            "owner": CAROL_LID,
            "participants": [
                {"id": CAROL_LID, "admin": "superadmin"},
                {"id": DAN_LID, "admin": None},
                {"id": ERIN_ID, "admin": "admin"},
            ],
        }
    )
    async with api.services.db_read() as read:
        (group,) = await shown(read, bob["id"], [info])
    assert group.owner == CAROL_ID
    assert [(p.id, p.role, p.lid) for p in group.participants] == [
        (CAROL_ID, "superadmin", CAROL_LID),
        (DAN_LID, "member", None),
        (ERIN_ID, "admin", None),
    ]


async def test_a_participant_change_answered_by_lid_names_the_number(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client removes Carol by the number the group's read showed; the engine (as
    Baileys does for a LID-addressed group) answers by her LID: the answer named someone
    the client never asked about."""
    bob = await ready_session(api, "bob")
    await learn(api, CAROL_LID, CAROL_ID)

    async def by_lid(
        _client: MockClient, _group_id: str, _action: str, participants: list[str]
    ) -> list[ParticipantResult]:
        lids = {CAROL_ID: CAROL_LID}
        return [ParticipantResult(lids.get(p, p), "ok") for p in participants]

    monkeypatch.setattr(MockClient, "change_participants", by_lid)
    response = await api.request(
        "POST",
        f"/api/sessions/{bob['id']}/groups/{GROUP}/participants",
        json={"action": "remove", "participants": [CAROL_ID, ERIN_ID]},
    )
    assert data_of(response) == [{"id": CAROL_ID, "status": "ok"}, {"id": ERIN_ID, "status": "ok"}]
