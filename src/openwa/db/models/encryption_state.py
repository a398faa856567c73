"""Which key the values encrypted at rest were written with (one row, or none)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class EncryptionStateRow(Base):
    __tablename__ = "encryption_state"

    # Always 1: the table holds at most one row.
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The key id (`kid`) of the key in use, for error messages.
    kid: Mapped[str] = mapped_column(String(32))
    # A known text encrypted with that key: a start with another key fails to open it.
    verifier: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
