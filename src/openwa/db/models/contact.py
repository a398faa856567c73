"""Contacts a session knows: from its chats, its groups and what its engine reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class ContactRow(Base):
    __tablename__ = "contacts"
    # Reports still addressed by LID are mapped to phone numbers through this index.
    __table_args__ = (Index("ix_contacts_session_lid", "session_id", "lid"),)

    session_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    chat_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    push_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # The WhatsApp LID (`...@lid`) this phone-number contact is known by, once learned.
    lid: Mapped[str | None] = mapped_column(String(128), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
