"""Messages, sent and received; the id is WhatsApp's own message id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_session_chat_ts", "session_id", "chat_id", "timestamp"),
        Index("ix_messages_session_engine_id", "session_id", "engine_id"),
    )

    session_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The engine's id for a message it could not send under ours (acks name that one).
    engine_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    chat_id: Mapped[str] = mapped_column(String(128))
    from_me: Mapped[bool] = mapped_column(Boolean)
    sender: Mapped[str | None] = mapped_column(String(128), nullable=True)
    type: Mapped[str] = mapped_column(String(16))
    # The message's content as the contract shows it (text, replyTo, mentions, ...).
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Why it failed, as a code clients can match on (`error` says it in words too).
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The texts it had before each edit, oldest first: [{text, at}] (`at`: when replaced).
    edits: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Inbound: when it was marked read. Any: when it was revoked for everyone.
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The stored media object, if any (also in `content.media`); indexed for retention.
    media_key: Mapped[str | None] = mapped_column(String(300), nullable=True, index=True)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
