"""Which messages of a synced history are still unread on the phone.

WhatsApp gives a chat's unread count, not the messages: they are the chat's newest
messages from others, as many as the count. Without this, a freshly linked account
showed every chat read while the phone still had them unread (the Node.js bridge finds
the same messages by the same rule, in `lib/unread.js`, before it cuts a sync into
frames).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from typing import Any, TypeVar

from openwa.engines.base import MessageReceived

Event = TypeVar("Event")


def newest_inbound(messages: Iterable[MessageReceived], count: int) -> set[str]:
    """The ids of the `count` newest messages from others among one chat's `messages`."""
    if count <= 0:
        return set()
    inbound = sorted(
        (m for m in messages if not m.from_me), key=lambda m: m.timestamp, reverse=True
    )
    return {m.id for m in inbound[:count]}


def marked_unread(event: Event, unread_ids: Collection[str]) -> Event:
    """`event` as a history message still unread, when it is one of `unread_ids`."""
    if (
        isinstance(event, MessageReceived)
        and event.history
        and not event.from_me
        and event.id in unread_ids
    ):
        return dataclasses.replace(event, unread=True)
    return event


def unread_ids(frame: Any) -> frozenset[str]:
    """The ids a bridge's history frame names as still unread (`unreadIds`)."""
    found = frame.get("unreadIds") if isinstance(frame, dict) else None
    if not isinstance(found, list):
        return frozenset()
    return frozenset(i for i in found if isinstance(i, str) and i)
