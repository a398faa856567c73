"""Inbound media is stored under a key of our own making, never under the message's id.

An inbound message's id comes from the sender's WhatsApp client, which a custom client
chooses: a group member may resend someone else's id, a contact the id of one of our
sends (Baileys sends under our ids), any id at all (punctuation, non-ASCII letters,
`webjs_profile`). None of that may reach another message's media or the session's
whatsapp-web.js profile, and the message keeps its own media whatever its id is.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import select, update

from openwa.db.models import MessageRow
from openwa.engines.base import EngineEvent, InboundMedia, MessageReceived
from openwa.storage.keys import profile_key
from tests.fixtures.app import Api, wait_for
from tests.messages.support import data_of, one_batch, ready_session, received


def image(n: int, message_id: str, data: bytes, **fields: Any) -> MessageReceived:
    """An inbound image under `message_id`, its bytes `data`."""
    media = InboundMedia(mimetype="image/jpeg", size=len(data), data=data)
    return received(n, id=message_id, type="image", content={}, media=media, **fields)


def jpeg() -> bytes:
    return b"\xff\xd8\xff" + os.urandom(64)


async def applied(api: Api, session_id: str, reports: list[EngineEvent], sentinel: int) -> None:
    """Hand the reports over as one run, followed by a text message; wait until that is
    stored (a report discarded as already stored leaves nothing else to wait for)."""
    last = received(sentinel)
    await one_batch(api, session_id, [*reports, last])
    await wait_for(
        lambda: api.request("GET", f"/api/sessions/{session_id}/messages/{last.id}"),
        lambda r: r.status_code == 200,
        what="the run stored",
    )


async def media_of(api: Api, session_id: str, message_id: str) -> bytes:
    """The message's media, downloaded as a client does."""
    url = f"/api/sessions/{session_id}/messages/{quote(message_id, safe='')}/media"
    response = await api.request("GET", url)
    assert response.status_code == 200, (message_id, response.text)
    return response.content


async def stored(api: Api, key: str) -> bytes:
    return b"".join([chunk async for chunk in api.services.storage.stream(key)])


async def media_keys(api: Api, session_id: str) -> list[str]:
    """The keys the session's messages refer to."""
    async with api.services.db() as db:
        query = select(MessageRow.media_key).where(
            MessageRow.session_id == session_id, MessageRow.media_key.is_not(None)
        )
        return [key for key in (await db.execute(query)).scalars() if key is not None]


async def listed(api: Api, session_id: str) -> set[str]:
    """Every object under the session's prefix."""
    future = datetime.now(UTC) + timedelta(days=1)
    return {key async for keys in api.services.storage.listed(session_id, future) for key in keys}


async def test_a_resent_id_leaves_the_first_messages_media_alone(api: Api) -> None:
    """A later message under a stored message's id (a group member resending someone
    else's id) is discarded as already stored, and the stored one keeps its bytes;
    so does the first of two under one id in the same run. The discarded copies are
    not left behind in storage."""
    session = await ready_session(api, "alice")
    sid = session["id"]
    first, again, twin_a, twin_b = jpeg(), jpeg(), jpeg(), jpeg()
    await applied(api, sid, [image(1, "3EB0ORIGINAL", first)], 100)
    await applied(
        api, sid, [image(2, "3EB0ORIGINAL", again, sender="4915199999999@s.whatsapp.net")], 101
    )
    assert await media_of(api, sid, "3EB0ORIGINAL") == first

    # Both in one run: the first is stored, the second discarded, as across runs.
    await applied(api, sid, [image(3, "3EB0TWIN", twin_a), image(4, "3EB0TWIN", twin_b)], 102)
    assert await media_of(api, sid, "3EB0TWIN") == twin_a

    keys = await media_keys(api, sid)
    assert len(keys) == len(set(keys)) == 2
    # The discarded copies go once their run is done (just after it is stored).
    await wait_for(lambda: listed(api, sid), lambda found: found == set(keys), what="copies gone")


async def test_an_inbound_id_of_one_of_our_sends_leaves_its_media_alone(api: Api) -> None:
    """With Baileys our sends go out under our ids, so a contact knows them: a message
    reported under the id of our media send does not touch the media we sent."""
    session = await ready_session(api, "alice")
    sid = session["id"]
    ours = jpeg()
    sent = data_of(
        await api.request(
            "POST",
            f"/api/sessions/{sid}/messages/media",
            data={"chatId": "+1 555 0100 200", "type": "image"},
            files={"file": ("photo.jpg", ours, "image/jpeg")},
        ),
        202,
    )
    await applied(api, sid, [image(1, sent["id"], jpeg())], 100)
    assert await media_of(api, sid, sent["id"]) == ours


async def test_ids_made_alike_for_a_key_keep_their_own_media(api: Api) -> None:
    """Ids that differ only in punctuation, that are punctuation only, or that differ
    past the 100th character: each message keeps its own bytes."""
    session = await ready_session(api, "alice")
    sid = session["id"]
    ids = ["3EB0-X", "3EB0X", "3EB0.X", "-+-", "+-+", "A" * 100 + "1", "A" * 100 + "2"]
    sent = {message_id: jpeg() for message_id in ids}
    reports: list[EngineEvent] = [
        image(n, message_id, data) for n, (message_id, data) in enumerate(sent.items(), 1)
    ]
    await applied(api, sid, reports, 100)
    for message_id, data in sent.items():
        assert await media_of(api, sid, message_id) == data, message_id


async def test_an_inbound_webjs_profile_zip_leaves_the_profile_alone(api: Api) -> None:
    """A document under the id `webjs_profile`, of type zip, would have been stored
    where whatsapp-web.js' saved login is: the profile stays as it was, and the
    message has its own file."""
    session = await ready_session(api, "alice")
    sid = session["id"]
    profile = b"PK\x03\x04 the saved login " + os.urandom(32)
    await api.services.storage.put(profile_key(sid), profile, "application/zip")
    planted = b"PK\x03\x04 someone else's login " + os.urandom(32)
    document = received(
        1,
        id="webjs_profile",
        type="document",
        content={},
        media=InboundMedia("application/zip", len(planted), "login.zip", data=planted),
    )
    await applied(api, sid, [document], 100)
    assert await stored(api, profile_key(sid)) == profile
    assert await media_of(api, sid, "webjs_profile") == planted


async def test_a_non_ascii_id_keeps_its_media(api: Api) -> None:
    """Letters beyond ASCII in an id: the message is stored with its media."""
    session = await ready_session(api, "alice")
    sid = session["id"]
    data = jpeg()
    await applied(api, sid, [image(1, "3EB0É名", data)], 100)
    shown = data_of(await api.request("GET", f"/api/sessions/{sid}/messages/{quote('3EB0É名')}"))
    assert shown.get("mediaError") is None, shown
    assert await media_of(api, sid, "3EB0É名") == data


async def test_retention_leaves_the_profile_a_message_of_before_named(api: Api) -> None:
    """A message stored before inbound media had keys of its own may name the profile
    (a document under the id `webjs_profile`): retention clears its media, and the
    profile stays."""
    session = await ready_session(api, "alice")
    sid = session["id"]
    profile = b"PK\x03\x04 the saved login"
    await api.services.storage.put(profile_key(sid), profile, "application/zip")
    document = received(1, id="webjs_profile", type="document", content={})
    await applied(api, sid, [document], 100)
    old = datetime.now(UTC) - timedelta(days=400)
    media = {"key": profile_key(sid), "mimetype": "application/zip", "size": len(profile)}
    async with api.services.db() as db, db.begin():
        await db.execute(
            update(MessageRow)
            .where(MessageRow.session_id == sid, MessageRow.id == "webjs_profile")
            .values(timestamp=old, media_key=profile_key(sid), content={"media": media})
        )
    assert await api.services.maintenance.prune_media(datetime.now(UTC) - timedelta(days=30)) == 1
    assert await stored(api, profile_key(sid)) == profile
    shown = data_of(await api.request("GET", f"/api/sessions/{sid}/messages/webjs_profile"))
    assert shown["media"]["deleted"] is True
