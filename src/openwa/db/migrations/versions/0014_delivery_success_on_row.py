"""A delivery's successful attempt is kept on the delivery row, not as an attempt row.

Most deliveries succeed at their first attempt; writing an attempt row for each doubled
the writes of every delivery. `last_duration_ms` is set when the delivery's last attempt
succeeded and has no row of its own: the log shows it after the failed attempts' rows.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("last_duration_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    # The successes kept on their rows become attempt rows again, so no log loses them.
    op.execute(
        "INSERT INTO delivery_attempts (delivery_id, attempt, at, status_code, error, "
        "duration_ms, details) SELECT id, attempts, updated_at, last_status_code, NULL, "
        "last_duration_ms, NULL FROM deliveries WHERE last_duration_ms IS NOT NULL "
        "AND status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM delivery_attempts a "
        "WHERE a.delivery_id = deliveries.id AND a.attempt = deliveries.attempts "
        "AND a.at = deliveries.updated_at)"
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("last_duration_ms")
