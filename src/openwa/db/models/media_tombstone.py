"""Deleted sessions whose stored media is still to be swept.

A session's media is deleted right after the session (`SessionService.delete`), but that
can fail (the store unreachable), be cut short (the process killed before it ran), or be
outrun (an engine's late report storing a file after it). The session's row is gone by
then, so this row, written in the delete's own transaction, is what remembers that the
prefix is ours to empty: maintenance deletes what is under it again a while later, then
the row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class MediaTombstoneRow(Base):
    __tablename__ = "media_tombstones"

    session_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime())
