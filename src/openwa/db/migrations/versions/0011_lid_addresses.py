"""WhatsApp LIDs kept alongside phone-number ids: on messages (`fromLid` / `chatLid`) and
on contacts (the mapping LID -> phone number, looked up by LID).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LID_SENDER = sa.text("sender LIKE '%@lid'")


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_lid", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("chat_lid", sa.String(length=128), nullable=True))
    # Partial: only messages from senders known by LID alone (found at once on a mapping).
    op.create_index(
        "ix_messages_session_lid_sender",
        "messages",
        ["session_id", "sender"],
        sqlite_where=_LID_SENDER,
        postgresql_where=_LID_SENDER,
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lid", sa.String(length=128), nullable=True))
        batch_op.create_index("ix_contacts_session_lid", ["session_id", "lid"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_messages_session_lid_sender", table_name="messages")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_session_lid")
        batch_op.drop_column("lid")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("chat_lid")
        batch_op.drop_column("sender_lid")
