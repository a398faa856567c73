"""The mock engine's own store (like whatsmeow's tables): its transmit log and inboxes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class MockTransmissionRow(Base):
    __tablename__ = "mock_transmissions"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    session_id: Mapped[str] = mapped_column(String(40), index=True)
    message_id: Mapped[str] = mapped_column(String(128))
    chat_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MockInboxRow(Base):
    """Each mock phone's inbox: one row per message id, so a resend is dropped."""

    __tablename__ = "mock_inbox"

    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set once handed to the recipient's session; unset rows are handed over on connect.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
