"""What the group routes refuse: bad bodies and ids, sessions not ready, viewers, engines."""

from __future__ import annotations

from typing import Any

from openwa.engines.mock.engine import MOCK_CAPABILITIES
from tests.fixtures.app import Api
from tests.groups.support import UNKNOWN_GROUP, create_group, groups_url, post_group
from tests.messages.support import data_of, error_of, plus, ready_pair, ready_session

BAD_GROUP_IDS = [
    "12345",  # a phone number: a user address, not a group
    "6281234567890@s.whatsapp.net",
    "abc@g.us",
    "123@g.us",  # too short for a group address
    "status@broadcast",
    "someone@lid",
    "not an id",
]
BAD_PARTICIPANTS = [
    "not-a-number",
    "12",
    "120363025246125486@g.us",
    "status@broadcast",
    "x@newsletter",
]
BAD_CREATES: list[tuple[str, Any]] = [
    ("empty", {}),
    ("no participants", {"name": "Team"}),
    ("no name", {"participants": ["+1 555 010 0000"]}),
    ("empty name", {"name": "", "participants": ["+1 555 010 0000"]}),
    ("blank name", {"name": "   ", "participants": ["+1 555 010 0000"]}),
    ("long name", {"name": "x" * 101, "participants": ["+1 555 010 0000"]}),
    ("name not a string", {"name": 7, "participants": ["+1 555 010 0000"]}),
    ("empty participants", {"name": "Team", "participants": []}),
    ("participants not a list", {"name": "Team", "participants": "+1 555 010 0000"}),
    ("participant not a string", {"name": "Team", "participants": [15550100000]}),
    ("unknown field", {"name": "Team", "participants": ["+1 555 010 0000"], "x": 1}),
    ("not an object", ["Team"]),
]
BAD_UPDATES: list[tuple[str, Any]] = [
    ("nothing to change", {}),
    ("only nulls", {"subject": None, "description": None}),
    ("empty settings", {"settings": {}}),
    ("empty subject", {"subject": ""}),
    ("blank subject", {"subject": "  "}),
    ("long subject", {"subject": "x" * 101}),
    ("long description", {"description": "x" * 2049}),
    ("setting not a boolean", {"settings": {"announce": "yes"}}),
    ("unknown setting", {"settings": {"locked": True}}),
    ("unknown field", {"subject": "Team", "name": "Team"}),
]
BAD_CHANGES: list[tuple[str, Any]] = [
    ("no action", {"participants": ["+1 555 010 0000"]}),
    ("unknown action", {"action": "ban", "participants": ["+1 555 010 0000"]}),
    ("no participants", {"action": "add"}),
    ("empty participants", {"action": "add", "participants": []}),
]


def group_routes(group_id: str) -> list[tuple[str, str, Any]]:
    """Every route that takes a group id, with a body that is valid otherwise."""
    return [
        ("GET", groups_url("alice", group_id), None),
        ("PATCH", groups_url("alice", group_id), {"subject": "Team"}),
        (
            "POST",
            groups_url("alice", group_id, "/participants"),
            {"action": "add", "participants": ["+1 555 010 0000"]},
        ),
        ("GET", groups_url("alice", group_id, "/invite-code"), None),
        ("POST", groups_url("alice", group_id, "/leave"), None),
    ]


def all_routes(group_id: str) -> list[tuple[str, str, Any]]:
    create = {"name": "Team", "participants": ["+1 555 010 0000"]}
    return [
        ("GET", groups_url("alice"), None),
        ("POST", groups_url("alice"), create),
        *group_routes(group_id),
    ]


async def test_bad_bodies_are_validation_errors(api: Api) -> None:
    await ready_session(api, "alice")
    gid = UNKNOWN_GROUP
    cases = [("POST", groups_url("alice"), name, body) for name, body in BAD_CREATES]
    cases += [("PATCH", groups_url("alice", gid), name, body) for name, body in BAD_UPDATES]
    cases += [
        ("POST", groups_url("alice", gid, "/participants"), name, body)
        for name, body in BAD_CHANGES
    ]
    for method, url, name, body in cases:
        response = await api.request(method, url, json=body)
        error = error_of(response, 400, "VALIDATION_ERROR", name)
        assert error["details"], name
    broken = await api.request(
        "POST",
        groups_url("alice"),
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    error_of(broken, 400, "VALIDATION_ERROR")
    for limit in (0, 101):
        response = await api.request("GET", groups_url("alice"), params={"limit": limit})
        error_of(response, 400, "VALIDATION_ERROR", limit)


async def test_participants_must_be_people(api: Api) -> None:
    await ready_session(api, "alice")
    for participant in BAD_PARTICIPANTS:
        response = await post_group(api, "alice", "Team", ["+1 555 010 0000", participant])
        error = error_of(response, 400, "INVALID_CHAT_ID", participant)
        assert error["details"]["field"] == "participants.1"
        change = await api.request(
            "POST",
            groups_url("alice", UNKNOWN_GROUP, "/participants"),
            json={"action": "add", "participants": [participant]},
        )
        error_of(change, 400, "INVALID_CHAT_ID", participant)
    assert data_of(await api.request("GET", groups_url("alice"))) == []


async def test_group_ids_must_be_group_addresses(api: Api) -> None:
    await ready_session(api, "alice")
    for bad in BAD_GROUP_IDS:
        for method, url, body in group_routes(bad):
            response = await api.request(method, url, json=body)
            error = error_of(response, 400, "INVALID_CHAT_ID", (method, url))
            assert error["details"] == {"groupId": bad}, error


async def test_unknown_group_is_an_engine_error(api: Api) -> None:
    await ready_session(api, "alice")
    for method, url, body in group_routes(UNKNOWN_GROUP):
        error = error_of(await api.request(method, url, json=body), 422, "ENGINE_ERROR", url)
        assert "does not exist" in error["details"]["reason"], url
        assert error["details"]["groupId"] == UNKNOWN_GROUP


async def test_group_id_is_normalised(api: Api) -> None:
    _, bob = await ready_pair(api)
    gid = (await create_group(api, "alice", "Team", [plus(bob)]))["id"]
    info = data_of(await api.request("GET", groups_url("alice", gid.upper())))
    assert info["id"] == gid


async def test_sessions_not_ready_are_refused(api: Api) -> None:
    _, bob = await ready_pair(api)
    gid = (await create_group(api, "alice", "Team", [plus(bob)]))["id"]
    stopped = data_of(await api.request("POST", "/api/sessions/alice/stop"))
    assert stopped["status"] == "stopped"
    await api.create_session("idle", autoStart=False)
    for ref in ("alice", "idle"):
        for method, url, body in all_routes(gid):
            url = url.replace("/sessions/alice/", f"/sessions/{ref}/")
            error = error_of(
                await api.request(method, url, json=body), 409, "SESSION_NOT_READY", url
            )
            assert error["details"]["status"] in ("stopped", "created"), error


async def test_viewer_keys_read_but_do_not_write(api: Api) -> None:
    _, bob = await ready_pair(api)
    gid = (await create_group(api, "alice", "Team", [plus(bob)]))["id"]
    viewer = await api.new_key("viewer")
    for method, url, body in all_routes(gid):
        response = await api.request(method, url, json=body, key=viewer)
        if method == "GET":
            assert response.status_code == 200, (url, response.text)
        else:
            error_of(response, 403, "FORBIDDEN", url)
    # Nothing changed: still one group, same subject, alice still in it.
    info = data_of(await api.request("GET", groups_url("alice", gid)))
    assert info["subject"] == "Team"
    assert len(info["participants"]) == 2
    # An invalid body from a viewer is still a 403: the key is checked first.
    error_of(await post_group(api, "alice", "", [], key=viewer), 403, "FORBIDDEN")


async def test_scoped_key_gets_403_on_other_sessions(api: Api) -> None:
    alice = await ready_session(api, "alice")
    await api.create_session("other", autoStart=False)
    operator = await api.new_key("operator", sessions=[alice["id"]])
    for method, url, body in all_routes(UNKNOWN_GROUP):
        url = url.replace("/sessions/alice/", "/sessions/other/")
        error_of(await api.request(method, url, json=body, key=operator), 403, "FORBIDDEN", url)
    data_of(await api.request("GET", groups_url("alice"), key=operator))


async def test_unknown_session_is_404(api: Api) -> None:
    for method, url, body in all_routes(UNKNOWN_GROUP):
        url = url.replace("/sessions/alice/", "/sessions/nobody/")
        error_of(await api.request(method, url, json=body), 404, "SESSION_NOT_FOUND", url)


async def test_engine_without_groups_is_not_supported(api: Api) -> None:
    await ready_session(api, "alice")
    engine = api.services.engines.get("mock")
    # As if the mock were an engine that cannot do groups.
    engine.capabilities = MOCK_CAPABILITIES - {"groups"}
    try:
        for method, url, body in all_routes(UNKNOWN_GROUP):
            error = error_of(await api.request(method, url, json=body), 501, "NOT_SUPPORTED", url)
            assert error["details"] == {"engine": "mock", "capability": "groups"}
    finally:
        engine.capabilities = MOCK_CAPABILITIES
