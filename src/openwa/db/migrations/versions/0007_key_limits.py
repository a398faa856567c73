"""API keys may expire and be limited to client networks; stored prefixes shortened.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openwa.db.base import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MARKER = "owa_"


def _shortened(prefix: str, source: str) -> str:
    """The stored prefix cut to what `display_prefix` keeps now: `owa_` and at most 4
    characters of the secret, and never more than a quarter of it. Keys the server made
    (`api`, `generated`) have 43 secret characters; an `API_KEY` (`env`) is gone and its
    length unknown, so a quarter of what was stored of it (at most 12 characters, the
    whole key when shorter) is never more than a quarter of the key."""
    marker = _MARKER if prefix.startswith(_MARKER) else ""
    rest = prefix[len(marker) :]
    shown = 4 if source != "env" else min(4, len(rest) // 4)
    return marker + rest[:shown]


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("expires_at", UTCDateTime(), nullable=True))
    op.add_column("api_keys", sa.Column("allowed_cidrs", sa.JSON(), nullable=True))
    keys = sa.table(
        "api_keys",
        sa.column("id", sa.String),
        sa.column("prefix", sa.String),
        sa.column("source", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(sa.select(keys.c.id, keys.c.prefix, keys.c.source)).all()
    for key_id, prefix, source in rows:
        if (short := _shortened(prefix, source)) != prefix:
            bind.execute(keys.update().where(keys.c.id == key_id).values(prefix=short))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("allowed_cidrs")
        batch.drop_column("expires_at")
