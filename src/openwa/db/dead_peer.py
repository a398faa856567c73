"""Finding out that the database's host is gone, on connections that wait for it.

A host that vanishes without a reset (a failover that moved its address, a network that
drops packets, a VM frozen for good) leaves every connection to it open: a statement
waits for an answer that never comes, and Linux gives up only after its retransmission
limit, about 15 minutes, while the pool keeps handing the connection out. A statement
bound (asyncpg's `command_timeout`) would also cut off a slow statement that the server
is still working on (a large retention delete, a cascade): so the bound is set on the
socket instead, where only the host's silence counts. Keep-alive probes go out after
a third of `DATABASE_TCP_TIMEOUT_S` without traffic, and `TCP_USER_TIMEOUT` ends the
connection when what we sent (a statement, a probe) stays unacknowledged for
`DATABASE_TCP_TIMEOUT_S` (on Linux it then also ends an idle connection at the first
probe past it, about `DATABASE_TCP_TIMEOUT_S` plus a probe interval); a host that is up
acknowledges both at once, whatever its database is doing. (One rare case it may also
end: a very large batch sent while the server is blocked for longer than that and has
stopped reading.) The connection then fails (`ConnectionResetError`, a reason of the
moment: `db.engine.transient`), and the pool opens a new one.
"""

from __future__ import annotations

import socket
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

# Linux's names; elsewhere only SO_KEEPALIVE is set.
_KEEPIDLE = getattr(socket, "TCP_KEEPIDLE", None)
_KEEPINTVL = getattr(socket, "TCP_KEEPINTVL", None)
_KEEPCNT = getattr(socket, "TCP_KEEPCNT", None)
_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", None)
_PROBES = 3

log = structlog.get_logger(__name__)


def bound_socket(sock: Any, timeout_s: float) -> None:
    """Set the keep-alive and user timeout on `sock` (TCP only: a Unix socket's peer is
    this host)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle = max(1, int(timeout_s / 3))
    interval = max(1, int((timeout_s - idle) / _PROBES))
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, _KEEPIDLE, idle),
        (socket.IPPROTO_TCP, _KEEPINTVL, interval),
        (socket.IPPROTO_TCP, _KEEPCNT, _PROBES),
        (socket.IPPROTO_TCP, _USER_TIMEOUT, int(timeout_s * 1000)),
    ]
    for level, option, value in options:
        if option is None:
            continue
        try:
            sock.setsockopt(level, option, value)
        except OSError as exc:
            # A kernel without the option (some sandboxes): the connection still works,
            # only without this bound.
            _refused_once(option, exc)


_REFUSED: set[int] = set()


def _refused_once(option: int, exc: OSError) -> None:
    if option not in _REFUSED:
        _REFUSED.add(option)
        log.warning("database_socket_option_refused", option=option, error=str(exc))


def bound_sockets(engine: AsyncEngine, timeout_s: float) -> None:
    """Every connection `engine` opens gets `bound_socket`."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        bound_socket(asyncpg_socket(dbapi_connection), timeout_s)


def asyncpg_socket(dbapi_connection: Any) -> Any:
    """The socket under SQLAlchemy's asyncpg adapter, or None."""
    raw = getattr(dbapi_connection, "_connection", None)
    transport = getattr(raw, "_transport", None)
    return transport.get_extra_info("socket") if transport is not None else None
