"""The id an engine gave a message it could not send under ours (whatsmeow).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 04:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("engine_id", sa.String(length=128), nullable=True))
        batch_op.create_index(
            "ix_messages_session_engine_id", ["session_id", "engine_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_session_engine_id")
        batch_op.drop_column("engine_id")
