"""The session status machine.

    created -> initializing -> qr_ready -> authenticated -> ready
    off the path: disconnected (will reconnect), failed (gave up), stopped

`initializing` is reachable from every state but itself: a start, a restart, a
reconnect or a restore after the server restarted all begin there.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    CREATED = "created"
    INITIALIZING = "initializing"
    QR_READY = "qr_ready"
    AUTHENTICATED = "authenticated"
    READY = "ready"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    STOPPED = "stopped"


_RUNNING = {
    Status.INITIALIZING,
    Status.QR_READY,
    Status.AUTHENTICATED,
    Status.READY,
    Status.DISCONNECTED,
}

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.CREATED: frozenset({Status.INITIALIZING, Status.STOPPED}),
    Status.INITIALIZING: frozenset(
        {Status.QR_READY, Status.AUTHENTICATED, Status.DISCONNECTED, Status.FAILED, Status.STOPPED}
    ),
    Status.QR_READY: frozenset(
        {
            Status.INITIALIZING,
            Status.AUTHENTICATED,
            Status.DISCONNECTED,
            Status.FAILED,
            Status.STOPPED,
        }
    ),
    Status.AUTHENTICATED: frozenset(
        {Status.INITIALIZING, Status.READY, Status.DISCONNECTED, Status.FAILED, Status.STOPPED}
    ),
    Status.READY: frozenset(
        {Status.INITIALIZING, Status.DISCONNECTED, Status.FAILED, Status.STOPPED}
    ),
    Status.DISCONNECTED: frozenset({Status.INITIALIZING, Status.FAILED, Status.STOPPED}),
    Status.FAILED: frozenset({Status.INITIALIZING, Status.STOPPED}),
    Status.STOPPED: frozenset({Status.INITIALIZING, Status.FAILED}),
}

HISTORY_LENGTH = 10


def can_move(current: Status, new: Status) -> bool:
    return new in ALLOWED[current]


def is_running(status: Status) -> bool:
    """Whether a session in this status holds (or is getting) a connection."""
    return status in _RUNNING
