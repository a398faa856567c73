"""The wire between the API process and the whatsmeow worker: length-prefixed orjson
frames on a socket pair, and our engine events and group records as plain dicts.

The worker's stdout is never the channel: neonize and whatsmeow print to it on their own.
Media never rides in a frame: it crosses as a file in the engine's private transfer
directory (`transfer`), the frame naming its path. As base64 in JSON a 64 MiB file made
an 85 MiB frame that held the API's event loop for about a second.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any, get_args

import orjson

from openwa.engines.base import (
    EngineEvent,
    GroupInfo,
    InboundMedia,
    MessageReceived,
    OutgoingMessage,
)
from openwa.engines.content import from_stored, to_json

_HEADER = struct.Struct(">I")
# Media no longer rides in frames; the largest left are command answers such as every
# joined group with its participants.
MAX_FRAME = 256 * 1024 * 1024

# Every event of the port, by class name (`EngineEvent` is their union).
_EVENTS: dict[str, type[Any]] = {cls.__name__: cls for cls in get_args(EngineEvent)}
# Their fields that hold times (ISO 8601 strings on the wire).
_TIMES: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if str(f.type).startswith("datetime"))
    for cls in _EVENTS.values()
}


def _default(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):  # small binary arguments only (a test's built event)
        return base64.b64encode(value).decode()
    raise TypeError(type(value).__name__)


def pack(frame: dict[str, Any]) -> bytes:
    body = orjson.dumps(frame, default=_default)
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None when the other side has gone."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes is over the limit")
        frame: dict[str, Any] = orjson.loads(await reader.readexactly(size))
        return frame
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def encode_event(event: EngineEvent) -> dict[str, Any]:
    if isinstance(event, MessageReceived) and event.media and event.media.data is not None:
        raise ValueError("media crosses as a file (InboundMedia.path), never inside a frame")
    return {"type": type(event).__name__, "data": asdict(event)}


def decode_event(payload: dict[str, Any]) -> EngineEvent:
    cls = _EVENTS[payload["type"]]
    data = dict(payload["data"])
    for name in _TIMES.get(cls, ()):
        if data.get(name) is not None:
            data[name] = datetime.fromisoformat(data[name])
    if cls is MessageReceived:
        media = data.get("media")
        if media is not None:
            path = media.get("path")
            data["media"] = InboundMedia(**{**media, "path": Path(path) if path else None})
    event: EngineEvent = cls(**data)
    return event


def encode_group(group: GroupInfo) -> dict[str, Any]:
    return asdict(group)


def decode_group(data: dict[str, Any]) -> GroupInfo:
    created = data.get("created_at")
    return GroupInfo(**{**data, "created_at": datetime.fromisoformat(created) if created else None})


def outgoing_wire(message: OutgoingMessage) -> dict[str, Any]:
    """A send as it crosses to the worker: its typed content as JSON, with its type."""
    return {
        "id": message.id,
        "chat_id": message.chat_id,
        "type": message.type,
        "content": to_json(message.content),
    }


def outgoing_from_wire(payload: dict[str, Any]) -> OutgoingMessage:
    """The send `outgoing_wire` made, typed again on the worker's side."""
    content = from_stored(payload["type"], payload["content"])
    return OutgoingMessage(payload["id"], payload["chat_id"], content)
