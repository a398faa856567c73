"""The message status machine (the contract's Messages section).

    pending -> sent -> delivered -> read -> played     (forward only; later may skip)
    pending -> failed (never sent), sent -> failed (the server refused it)
    pending -> cancelled (DELETE before it went)
    received: inbound messages; no transitions

The sender and the ack path record changes in their own transactions, in whatever
order timing gives them; both ask `path` what to record under the message's row lock,
so the log reads in status order whoever comes first.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RECEIVED = "received"


FORWARD: tuple[MessageStatus, ...] = (
    MessageStatus.PENDING,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.PLAYED,
)
# Statuses of a message WhatsApp has taken: it can be revoked, not cancelled.
GONE_OUT = frozenset(FORWARD[1:])


def parse(value: str) -> MessageStatus | None:
    """The status named by `value`, or None for one we do not know (an engine's
    report of a status we do not track is ignored, not an error)."""
    try:
        return MessageStatus(value)
    except ValueError:
        return None


def can_fail(current: MessageStatus) -> bool:
    """`failed` only before the message went (pending) or when the server refused it
    (sent); once delivered it stays delivered whatever an engine says later."""
    return current in (MessageStatus.PENDING, MessageStatus.SENT)


def refused(current: MessageStatus) -> list[MessageStatus]:
    """The changes a server's refusal (an engine's `failed` receipt) records: the
    message went, so `failed` follows `sent` (recorded first if the message was still
    pending, as any ack does); once delivered, a refusal changes nothing."""
    if current == MessageStatus.PENDING:
        return [MessageStatus.SENT, MessageStatus.FAILED]
    return [MessageStatus.FAILED] if current == MessageStatus.SENT else []


def can_cancel(current: MessageStatus) -> bool:
    return current == MessageStatus.PENDING


def path(current: MessageStatus, target: MessageStatus) -> list[MessageStatus]:
    """The changes to record, in order, to move a message from `current` to `target`.

    As the contract says, a later status may skip earlier ones (`read` may follow `sent`
    directly), except `sent` itself: an ack for a message still pending records `sent`
    first (an ack for `delivered` gives [sent, delivered]), so that every message that
    went out has its `message.sent`. Empty when the move is backwards, a repeat, or not
    a transition at all."""
    if target == MessageStatus.FAILED:
        return [target] if can_fail(current) else []
    if target == MessageStatus.CANCELLED:
        return [target] if can_cancel(current) else []
    if current not in FORWARD or target not in FORWARD:
        return []
    if FORWARD.index(target) <= FORWARD.index(current):
        return []
    if current == MessageStatus.PENDING and target != MessageStatus.SENT:
        return [MessageStatus.SENT, target]
    return [target]
