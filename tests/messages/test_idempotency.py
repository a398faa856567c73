"""Idempotency-Key: a retried request gets the first answer instead of a second send."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from openwa.db.models import MessageRow
from tests.fixtures.app import Api
from tests.messages.support import (
    data_of,
    error_of,
    plus,
    post_text,
    ready_pair,
    send_text,
    transmitted,
    transmitted_ids,
    wait_sent,
)


async def outgoing_count(api: Api, session_id: str) -> int:
    async with api.services.db() as db:
        count = await db.scalar(
            select(func.count())
            .select_from(MessageRow)
            .where(MessageRow.session_id == session_id, MessageRow.from_me.is_(True))
        )
    return int(count or 0)


async def test_same_key_and_body_returns_the_first_answer(api: Api) -> None:
    alice, bob = await ready_pair(api)
    first = data_of(
        await post_text(api, "alice", plus(bob), "only once", idempotency_key="k-1"), 202
    )
    await wait_sent(api, "alice", first["id"])
    again = await post_text(api, "alice", plus(bob), "only once", idempotency_key="k-1")
    second = data_of(again, 202)
    assert second["id"] == first["id"]
    assert second == first  # the first answer, as it was given (still `pending`)

    # A marker sent after the retry: once it is out, anything the retry queued is too.
    marker = await send_text(api, "alice", plus(bob), "marker")
    await wait_sent(api, "alice", marker["id"])
    assert transmitted_ids(await transmitted(api, "alice")) == [first["id"], marker["id"]]
    assert await outgoing_count(api, alice["id"]) == 2

    # The same key with another request is a conflict; the first answer still stands.
    others: list[tuple[str, str, dict[str, str]]] = [
        (plus(bob), "two", {}),
        ("+62 812-3456-7890", "only once", {}),
        (plus(bob), "only once", {"sendAt": "2030-01-01T00:00:00Z"}),
    ]
    for chat_id, text, extra in others:
        response = await post_text(api, "alice", chat_id, text, idempotency_key="k-1", **extra)
        error_of(response, 409, "IDEMPOTENCY_CONFLICT", (chat_id, text, extra))
    replay = await post_text(api, "alice", plus(bob), "only once", idempotency_key="k-1")
    assert data_of(replay, 202)["id"] == first["id"]
    assert await outgoing_count(api, alice["id"]) == 2


async def test_keys_are_scoped_to_the_api_key_and_session(api: Api) -> None:
    alice, bob = await ready_pair(api)
    operator = await api.new_key("operator")
    first = data_of(await post_text(api, "alice", plus(bob), "hi", idempotency_key="k-3"), 202)
    other_key = await post_text(api, "alice", plus(bob), "hi", key=operator, idempotency_key="k-3")
    by_operator = data_of(other_key, 202)
    assert by_operator["id"] != first["id"]
    # A different body under the other API key is no conflict either.
    different = await post_text(
        api, "alice", plus(bob), "else", key=operator, idempotency_key="k-4"
    )
    data_of(different, 202)
    # The same key on another session is independent too.
    on_bob = data_of(await post_text(api, "bob", plus(alice), "hi", idempotency_key="k-3"), 202)
    assert on_bob["id"] not in (first["id"], by_operator["id"])

    await wait_sent(api, "alice", first["id"])
    await wait_sent(api, "alice", by_operator["id"])
    await wait_sent(api, "bob", on_bob["id"])
    ids = transmitted_ids(await transmitted(api, "alice"))
    assert first["id"] in ids
    assert by_operator["id"] in ids


async def test_concurrent_requests_with_one_key_make_one_message(api: Api) -> None:
    alice, bob = await ready_pair(api)
    responses = await asyncio.gather(
        *(post_text(api, "alice", plus(bob), "racing", idempotency_key="k-5") for _ in range(5))
    )
    answers = [data_of(response, 202) for response in responses]
    ids = {answer["id"] for answer in answers}
    assert len(ids) == 1, ids
    (message_id,) = ids
    await wait_sent(api, "alice", message_id)
    marker = await send_text(api, "alice", plus(bob), "marker")
    await wait_sent(api, "alice", marker["id"])
    assert transmitted_ids(await transmitted(api, "alice")) == [message_id, marker["id"]]
    assert await outgoing_count(api, alice["id"]) == 2


async def test_key_without_a_ready_session_is_not_consumed(api: Api) -> None:
    # A refused request stores no answer: once the session runs, the same key sends.
    await api.create_session("alice", autoStart=False)
    refused = await post_text(api, "alice", "+62 812-3456-7890", "x", idempotency_key="k-6")
    error_of(refused, 409, "SESSION_NOT_READY")
    assert (await api.request("POST", "/api/sessions/alice/start")).status_code == 200
    await api.wait_status("alice", "ready")
    accepted = await post_text(api, "alice", "+62 812-3456-7890", "x", idempotency_key="k-6")
    message = data_of(accepted, 202)
    await wait_sent(api, "alice", message["id"])
