"""API keys, stored as SHA-256 hashes: a key is 256 random bits, so a fast hash is safe."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    sessions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # "api" (POST /api/keys), "env" (API_KEY) or "generated" (printed on first start).
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # None: never expires. From then on the key is refused (401).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # None: any client address. Otherwise normalised networks ("10.0.0.0/8", "2001:db8::/32").
    allowed_cidrs: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
