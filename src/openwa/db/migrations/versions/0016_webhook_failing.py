"""Webhooks keep the start of their current run of failures, and why they were switched
off when it lasted too long (`WEBHOOK_DISABLE_AFTER_DAYS`).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 09:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openwa.db.base import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("failing_since", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("last_failure_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("disabled_reason")
        batch.drop_column("last_failure_at")
        batch.drop_column("failing_since")
