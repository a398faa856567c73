"""Engine reports that could not be stored, kept for inspection instead of dropped.

Reports are applied in batches; when a batch fails, each report is tried alone, and one
that still fails (a push name PostgreSQL refuses, a row that clashes) is written here
with the error, so that it neither sinks the reports around it nor vanishes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openwa.db.base import Base, UTCDateTime


class SetAsideReportRow(Base):
    __tablename__ = "set_aside_reports"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    session_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
