"""Recording the deliveries that succeeded, a batch at a time, in the worker's results
transaction. A success is written only while the worker still holds the delivery (its
lease may have run out and gone to another instance)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam, func, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.base import table_of
from openwa.db.engine import is_postgres
from openwa.db.models import DeliveryRow

_DELIVERIES = table_of(DeliveryRow)
_SUCCEEDED: dict[str, Any] = {
    "status": "succeeded",
    "last_error": None,
    "locked_until": None,
    "updated_at": bindparam("b_now"),
}
# PostgreSQL: a batch of successes is one statement over arrays, not a statement per row
# (each row of an executemany is a statement of its own to the server, and a parameter
# set of its own to SQLAlchemy).
_DONE = (
    func.unnest(
        bindparam("b_ids", type_=ARRAY(BigInteger)),
        bindparam("b_attempts", type_=ARRAY(Integer)),
        bindparam("b_statuses", type_=ARRAY(Integer)),
        bindparam("b_ms", type_=ARRAY(Integer)),
    )
    .table_valued("id", "attempts", "status", "ms")
    .render_derived(name="done")
)
_SUCCEEDED_AT_ONCE = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == _DONE.c.id, _DELIVERIES.c.locked_by == bindparam("b_worker"))
    .values(
        attempts=_DONE.c.attempts,
        last_status_code=_DONE.c.status,
        last_duration_ms=_DONE.c.ms,
        **_SUCCEEDED,
    )
)
_SUCCEEDED_ONE = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("b_id"), _DELIVERIES.c.locked_by == bindparam("b_worker"))
    .values(
        attempts=bindparam("b_attempts"),
        last_status_code=bindparam("b_status"),
        last_duration_ms=bindparam("b_ms"),
        **_SUCCEEDED,
    )
)


async def write_successes(
    db: AsyncSession, succeeded: list[tuple[DeliveryRow, int, int]], worker: str, now: datetime
) -> None:
    """End the deliveries that succeeded, each only while `worker` still holds it."""
    if is_postgres(db):
        await db.execute(
            _SUCCEEDED_AT_ONCE,
            {
                "b_ids": [d.id for d, _, _ in succeeded],
                "b_attempts": [d.attempts + 1 for d, _, _ in succeeded],
                "b_statuses": [status for _, status, _ in succeeded],
                "b_ms": [ms for _, _, ms in succeeded],
                "b_worker": worker,
                "b_now": now,
            },
        )
        return
    # SQLite runs an executemany in C, row after row, without a round trip each.
    await db.execute(
        _SUCCEEDED_ONE,
        [
            {
                "b_id": d.id,
                "b_attempts": d.attempts + 1,
                "b_status": status,
                "b_ms": ms,
                "b_worker": worker,
                "b_now": now,
            }
            for d, status, ms in succeeded
        ],
    )
