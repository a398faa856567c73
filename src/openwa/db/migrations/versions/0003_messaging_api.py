"""Media, chats, contacts and mock groups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:33:36.796120
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openwa.db.base import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mock_accounts",
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("push_name", sa.String(length=256), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_mock_accounts")),
    )
    op.create_table(
        "mock_groups",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("invite_code", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mock_groups")),
    )
    op.create_table(
        "contacts",
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("chat_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("push_name", sa.String(length=256), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_contacts_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "chat_id", name=op.f("pk_contacts")),
    )
    op.create_table(
        "mock_group_members",
        sa.Column("group_id", sa.String(length=128), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["mock_groups.id"],
            name=op.f("fk_mock_group_members_group_id_mock_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "phone", name=op.f("pk_mock_group_members")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("read_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("media_key", sa.String(length=300), nullable=True))
        batch_op.create_index(batch_op.f("ix_messages_media_key"), ["media_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_media_key"))
        batch_op.drop_column("media_key")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("read_at")

    op.drop_table("mock_group_members")
    op.drop_table("contacts")
    op.drop_table("mock_groups")
    op.drop_table("mock_accounts")
