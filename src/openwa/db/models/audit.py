"""The audit log: one row per mutating API call and per first use of a key from an address."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class AuditRow(Base):
    __tablename__ = "audit_log"
    # Each filter of GET /api/audit reads newest first by id; pruning reads by time.
    __table_args__ = (
        Index("ix_audit_log_key_id_id", "key_id", "id"),
        Index("ix_audit_log_session_id_id", "session_id", "id"),
        Index("ix_audit_log_action_id", "action", "id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    # None: the call presented no key, or one that did not authenticate.
    key_id: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(String(40))
    # The route's path parameters as called (ids, names); never a body or a query.
    target: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The body's field names (never their values).
    fields: Mapped[list[str] | None] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(64))
    # The HTTP status answered; None for a first use (it is not a call of its own).
    status: Mapped[int | None] = mapped_column(SmallInteger)
    request_id: Mapped[str] = mapped_column(String(128))


class KeyAddressRow(Base):
    """The (key, address) pairs already seen: the primary key makes a first use one row,
    however many instances see it at once."""

    __tablename__ = "audit_key_addresses"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
