"""A date-time from a client whose UTC form is outside the years 1 to 9999 (a valid
ISO 8601 string: `9999-12-31T23:59:59-12:00` is year 10000 in UTC) is a 400
`VALIDATION_ERROR` naming the field, wherever one is taken: `sendAt` of every send,
`expiresAt` of a key, `since` of the audit log. Before, it passed validation and
overflowed where it was stored or compared: a 500 (a media send's bytes were stored
first, and left)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from tests.fixtures.app import Api
from tests.messages.support import error_of, post_text, ready_session

OUT_OF_RANGE = ("9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00")
# The last and first instants a datetime holds, with offsets that keep them in range.
EDGES = ("9999-12-31T23:59:59+00:00", "0001-01-01T23:59:59+14:00", "9999-12-31T11:59:59-12:00")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def stored(api: Api) -> list[Path]:
    """Files in the media store and in the staging folder."""
    roots = (api.settings.resolved_storage_path, api.settings.data_dir / "tmp")
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def names(error: Any, field: str) -> None:
    assert field in str(error["details"]), error


async def test_send_at_out_of_range_is_a_validation_error(api: Api) -> None:
    await ready_session(api, "bob")
    for when in OUT_OF_RANGE:
        response = await post_text(api, "bob", "+6281234567890", "x", sendAt=when)
        print("text sendAt", when, response.status_code, response.json().get("error"))
        names(error_of(response, 400, "VALIDATION_ERROR", when), "sendAt")
    for when in EDGES:
        response = await post_text(api, "bob", "+6281234567890", "x", sendAt=when)
        assert response.status_code == 202, (when, response.text)


async def test_media_send_at_out_of_range_is_a_validation_error_and_stores_nothing(
    api: Api,
) -> None:
    await ready_session(api, "bob")
    path = "/api/sessions/bob/messages/media"
    for when in OUT_OF_RANGE:
        media = {"base64": base64.b64encode(PNG).decode(), "mimetype": "image/png"}
        body = {"chatId": "+6281234567890", "type": "image", "media": media, "sendAt": when}
        response = await api.request("POST", path, json=body)
        print("media sendAt", when, response.status_code, response.json().get("error"))
        names(error_of(response, 400, "VALIDATION_ERROR", when), "sendAt")
        response = await api.request(
            "POST",
            path,
            data={"chatId": "+6281234567890", "type": "image", "sendAt": when},
            files={"file": ("photo.png", PNG, "image/png")},
        )
        print("multipart sendAt", when, response.status_code, response.json().get("error"))
        names(error_of(response, 400, "VALIDATION_ERROR", when), "sendAt")
    assert stored(api) == []


async def test_key_expiry_out_of_range_is_a_validation_error(api: Api) -> None:
    created = (await api.request("POST", "/api/keys", json={"name": "k", "role": "viewer"})).json()
    for when in OUT_OF_RANGE:
        body = {"name": "k", "role": "viewer", "expiresAt": when}
        response = await api.request("POST", "/api/keys", json=body)
        print("key expiresAt", when, response.status_code, response.json().get("error"))
        names(error_of(response, 400, "VALIDATION_ERROR", when), "expiresAt")
        response = await api.request(
            "PATCH", f"/api/keys/{created['data']['id']}", json={"expiresAt": when}
        )
        names(error_of(response, 400, "VALIDATION_ERROR", when), "expiresAt")
    response = await api.request("POST", "/api/keys", json={**body, "expiresAt": EDGES[0]})
    assert response.status_code == 201, response.text


async def test_audit_since_out_of_range_is_a_validation_error(api: Api) -> None:
    for when in OUT_OF_RANGE:
        response = await api.request("GET", "/api/audit", params={"since": when})
        print("audit since", when, response.status_code, response.json().get("error"))
        names(error_of(response, 400, "VALIDATION_ERROR", when), "since")
    for when in EDGES:
        response = await api.request("GET", "/api/audit", params={"since": when})
        assert response.status_code == 200, (when, response.text)
