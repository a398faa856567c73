"""WhatsApp sessions: one linked account each, with its lifecycle state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    engine: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    status_history: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    phone_number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    push_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The current QR code while `qr_ready`, so any request (or instance) can serve it.
    qr: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Whether the session should run; restored on start when true.
    should_run: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
