"""One bad engine report never sinks the others of its run.

Reports reach the core in runs (up to 200 of a session's reports, one batch of its
runtime's worker). Whatever fails for one of them must stay with that one: the rest of
the run is stored, and the one that failed is kept visible (stored with what could be
made of it) or set aside (`set_aside_reports`), never dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from openwa.engines.base import EngineEvent, InboundMedia, MessageReceived
from tests.fixtures.app import Api, wait_for
from tests.messages.support import get_message, ready_session, recording, stored_and_set_aside

CHAT = "4915112345678@s.whatsapp.net"


def received(n: int, **fields: Any) -> MessageReceived:
    values: dict[str, Any] = {
        "id": f"3EB0{n:020X}",
        "chat_id": CHAT,
        "sender": CHAT,
        "type": "text",
        "content": {"text": f"message {n}"},
        "timestamp": datetime.now(UTC),
    } | fields
    return MessageReceived(**values)


async def one_batch(api: Api, session_id: str, reports: list[EngineEvent]) -> None:
    """Queue the reports as an engine does, so the worker takes them as one run."""
    runtime = api.services.runtime
    running = runtime._running[session_id]
    async with runtime.lock(session_id):
        for report in reports:
            running.events.put_nowait(report)


async def test_media_our_storage_refuses_leaves_the_message_and_its_run(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Stored with `mediaError`, its caption shown, the rest of the run stored; a file
    an engine handed over (whatsmeow, the bridge) is not left behind."""
    session = await ready_session(api, "alice")
    storage = api.services.storage
    put = storage.put

    async def full_disk(key: str, source: Any, mimetype: str) -> None:
        if "fails" in key:  # the message ids, made safe for a key
            raise OSError(28, "No space left on device")
        await put(key, source, mimetype)

    monkeypatch.setattr(storage, "put", full_disk)
    image = received(
        2,
        id="media-fails",
        type="image",
        content={"caption": "the caption"},
        media=InboundMedia(mimetype="image/jpeg", size=3, data=b"abc"),
    )
    handed_over = tmp_path / "transfer.jpg"
    handed_over.write_bytes(b"abc")
    from_a_file = received(
        4,
        id="file-fails",
        type="image",
        content={},
        media=InboundMedia(mimetype="image/jpeg", size=3, path=handed_over),
    )
    reports: list[EngineEvent] = [received(1), image, received(3), from_a_file]
    ids = {r.id for r in reports if isinstance(r, MessageReceived)}
    async with recording(api) as events:
        await one_batch(api, session["id"], reports)
        _, aside = await wait_for(
            lambda: stored_and_set_aside(api, session["id"]),
            lambda found: found[0] >= ids,
            what="the run stored",
        )
        announced = await events.one(
            lambda e: e.event == "message.received" and e.data["id"] == "media-fails"
        )
    assert aside == []
    shown = await get_message(api, session["id"], "media-fails")
    error = "not stored: our media storage failed (OSError)"
    assert (shown["caption"], shown.get("media"), shown["mediaError"]) == (
        "the caption",
        None,
        error,
    )
    assert announced.data["mediaError"] == error
    assert announced.data["caption"] == "the caption"
    assert (await get_message(api, session["id"], "file-fails"))["mediaError"] == error
    assert not handed_over.exists()


async def test_an_inbound_report_that_cannot_be_made_ready_is_set_aside_alone(
    api: Api,
) -> None:
    """Content the message model refuses (an engine's `location` that is no object)
    fails as the message is made ready, before the run: that one is set aside, the
    rest of the run is stored."""
    session = await ready_session(api, "alice")
    bad = received(2, content={"text": "bad", "location": "not an object"})
    reports: list[EngineEvent] = [received(1), bad, received(3)]
    await one_batch(api, session["id"], reports)

    good = {received(1).id, received(3).id}
    stored, aside = await wait_for(
        lambda: stored_and_set_aside(api, session["id"]),
        lambda found: found[0] >= good and len(found[1]) == 1,
        what="the run stored, the bad report set aside",
    )
    assert bad.id not in stored
    assert [(r.kind, r.report["id"]) for r in aside] == [("MessageReceived", bad.id)]
