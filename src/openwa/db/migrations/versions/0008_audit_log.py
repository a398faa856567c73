"""The audit log and the (key, address) pairs already seen.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openwa.db.base import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_audit_log_key_id_id": ["key_id", "id"],
    "ix_audit_log_session_id_id": ["session_id", "id"],
    "ix_audit_log_action_id": ["action", "id"],
    "ix_audit_log_at": ["at"],
}


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=True),
        sa.Column("target", sa.JSON(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    for name, columns in _INDEXES.items():
        op.create_index(name, "audit_log", columns)
    op.create_table(
        "audit_key_addresses",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "address", name="pk_audit_key_addresses"),
    )


def downgrade() -> None:
    op.drop_table("audit_key_addresses")
    for name in _INDEXES:
        op.drop_index(name, table_name="audit_log")
    op.drop_table("audit_log")
