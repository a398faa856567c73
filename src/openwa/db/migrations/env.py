"""Alembic environment: runs on the connection `openwa.db.migrate` hands it."""

from __future__ import annotations

from alembic import context

from openwa.db import models  # noqa: F401  (registers every table)
from openwa.db.base import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `openwa db upgrade`, which holds the lock")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
