"""API keys may expire and be limited to client networks; stored prefixes shortened.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openwa.db.base import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MARKER = "owa_"


def _shortened(prefix: str) -> str:
    """The stored prefix cut to what `display_prefix` keeps now. The key itself is gone,
    so for a key without the `owa_` marker its length is not known: a quarter of the
    stored prefix (at most 12 characters of it) is never more than a quarter of the key."""
    marker = _MARKER if prefix.startswith(_MARKER) else ""
    rest = prefix[len(marker) :]
    shown = 4 if marker else min(4, len(rest) // 4)
    return marker + rest[:shown]


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", UTCDateTime(), nullable=True))
    op.add_column("api_keys", sa.Column("allowed_cidrs", sa.JSON(), nullable=True))
    keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("prefix", sa.String))
    bind = op.get_bind()
    for key_id, prefix in bind.execute(sa.select(keys.c.id, keys.c.prefix)).all():
        if (short := _shortened(prefix)) != prefix:
            bind.execute(keys.update().where(keys.c.id == key_id).values(prefix=short))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("allowed_cidrs")
        batch.drop_column("expires_at")
