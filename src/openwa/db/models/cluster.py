"""Several instances on one database: who is a member, and who owns each session."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class InstanceRow(Base):
    """One OpenWA process that has joined (its heartbeat is `last_seen`)."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(512))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    max_sessions: Mapped[int] = mapped_column(Integer)
    running: Mapped[int] = mapped_column(Integer, default=0)
    # Shutting down: it takes no more sessions and hands its own back.
    draining: Mapped[bool] = mapped_column(Boolean, default=False)


class SessionLeaseRow(Base):
    """Which instance may connect a session, until when, and under which epoch.

    The epoch is a fencing token: every takeover bumps it, so a stale owner's writes
    and engine commands, which carry the epoch it was given, can be told apart.
    """

    __tablename__ = "session_leases"

    session_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(String(64), index=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
