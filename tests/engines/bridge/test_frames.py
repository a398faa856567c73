"""Frames from the Node.js bridge as Node writes them: a string holding half an emoji (a
lone UTF-16 surrogate, which JavaScript strings may hold) comes as a `\\ud83d` escape,
which orjson refuses; the frame (an inbound message, a command's answer) used to be
skipped, and the message lost. Unreadable lines are still skipped, one at a time."""

from __future__ import annotations

import asyncio
from typing import Any

from openwa.engines.bridge.process import PROTOCOL_VERSION, BridgeProcess


async def _nothing(*_: Any) -> None:
    return None


async def test_a_frame_holding_half_an_emoji_is_read_with_u_fffd() -> None:
    bridge = BridgeProcess("baileys", _nothing, _nothing)
    reader = asyncio.StreamReader()
    reader.feed_data(b"not json at all\n")
    reader.feed_data(
        b'{"v": %d, "kind": "event", "text": "half \\ud83d of it"}\n' % PROTOCOL_VERSION
    )
    reader.feed_data(b'{"v": %d, "kind": "event", "text": "\\ud83d\\ude00"}\n' % PROTOCOL_VERSION)
    reader.feed_eof()
    first = await bridge.decode(reader)
    second = await bridge.decode(reader)
    assert first is not None
    assert second is not None
    assert first["text"] == "half \ufffd of it"
    assert second["text"] == "\U0001f600"  # an escaped pair, whole
    assert await bridge.decode(reader) is None
