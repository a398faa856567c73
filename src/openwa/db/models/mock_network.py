"""The mock engine's own store (like whatsmeow's tables): its transmit log and inboxes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text
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
    # Which instance sent it, under which lease epoch (unset before leases existed).
    instance: Mapped[str | None] = mapped_column(String(64), nullable=True)
    epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class MockConnectionRow(Base):
    """Each time a mock session held its connection: which instance, under which lease
    epoch, from when to when. Tests read it to show that no two instances ever held one
    session at once (WhatsApp would log the device out)."""

    __tablename__ = "mock_connections"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    session_id: Mapped[str] = mapped_column(String(40), index=True)
    instance: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int] = mapped_column(BigInteger)
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)


class MockInboxRow(Base):
    """Each mock phone's inbox: one row per message id, so a resend is dropped."""

    __tablename__ = "mock_inbox"

    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set once handed to the recipient's session; unset rows are handed over on connect.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class MockAccountRow(Base):
    """The mock network's directory: which phone numbers are linked mock accounts."""

    __tablename__ = "mock_accounts"

    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(40))
    push_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MockGroupRow(Base):
    __tablename__ = "mock_groups"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    subject: Mapped[str] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    # {"announce": bool (only admins send), "restrict": bool (only admins edit info)}
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    invite_code: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MockGroupMemberRow(Base):
    __tablename__ = "mock_group_members"

    group_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("mock_groups.id", ondelete="CASCADE"), primary_key=True
    )
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    # "superadmin" (the creator), "admin" or "member"
    role: Mapped[str] = mapped_column(String(16))
