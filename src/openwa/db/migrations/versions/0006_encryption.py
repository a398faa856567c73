"""Encryption at rest: the key verifier, and webhook secrets widened for their tokens.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openwa.db.base import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "encryption_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kid", sa.String(length=32), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_encryption_state"),
    )
    # SQLite does not enforce VARCHAR lengths; PostgreSQL would refuse a long token.
    if op.get_bind().dialect.name == "postgresql":
        for column in ("secret", "previous_secret"):
            op.alter_column("webhooks", column, type_=sa.Text(), existing_type=sa.String(128))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in ("secret", "previous_secret"):
            op.alter_column("webhooks", column, type_=sa.String(128), existing_type=sa.Text())
    op.drop_table("encryption_state")
