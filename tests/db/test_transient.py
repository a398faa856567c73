"""Which database failures are of the moment (`db.engine.transient`): those a report
run is tried again after (messages/reports.py), rather than set aside at once."""

from __future__ import annotations

import socket

import asyncpg
import pytest
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from openwa.db.engine import transient


def _postgres(error: Exception) -> OperationalError:
    return OperationalError("SELECT 1", {}, error)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_postgres(asyncpg.exceptions.DeadlockDetectedError("deadlock detected")), True),
        (_postgres(asyncpg.exceptions.SerializationError("could not serialize")), True),
        (_postgres(asyncpg.exceptions.AdminShutdownError("terminating connection")), True),
        (_postgres(asyncpg.exceptions.TooManyConnectionsError("too many clients")), True),
        (_postgres(asyncpg.exceptions.CannotConnectNowError("starting up")), True),
        (InterfaceError("SELECT 1", {}, Exception("closed"), connection_invalidated=True), True),
        (PoolTimeout("QueuePool limit reached"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (socket.gaierror(-3, "Temporary failure in name resolution"), True),
        (OSError(113, "No route to host"), True),
        (FileNotFoundError(2, "No such file or directory"), False),
        (_postgres(asyncpg.exceptions.DatabaseDroppedError("database dropped")), False),
        (IntegrityError("INSERT", {}, asyncpg.exceptions.UniqueViolationError("dup")), False),
        (DataError("INSERT", {}, asyncpg.exceptions.StringDataRightTruncationError("long")), False),
        (OperationalError("SELECT 1", {}, Exception("no such table: messages")), False),
        (RuntimeError("a bug"), False),
    ],
)
def test_what_may_pass_a_moment_later(error: Exception, expected: bool) -> None:
    assert transient(error) is expected
