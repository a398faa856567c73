"""Deleted sessions whose stored media maintenance is still to sweep.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openwa.db.base import UTCDateTime

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_tombstones",
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )


def downgrade() -> None:
    op.drop_table("media_tombstones")
