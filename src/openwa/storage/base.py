"""The storage port. Keys are made by OpenWA only (`keys.py`), never from client names."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    kind: str

    async def put(self, key: str, source: bytes | Path, content_type: str) -> None: ...

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; `FileNotFoundError` when there is none."""
        ...

    async def copy(self, source: str, target: str) -> None:
        """Copy within the store (server-side on S3), without passing bytes through us."""
        ...

    async def delete(self, key: str) -> None: ...

    async def delete_under(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix/` (a session's id: what it
        stored); how many there were."""
        ...

    def listed(self, prefix: str, before: datetime) -> AsyncGenerator[list[str], None]:
        """Keys under `prefix/` (a session's id) last written before `before`, a batch
        at a time: what maintenance looks at for files no message refers to."""
        ...

    async def presign(self, key: str, expires_s: int) -> str | None:
        """A time-limited GET URL, or None where the store cannot make one (local files)."""
        ...

    async def check(self) -> None:
        """Raise when the store cannot be used (for `/health/ready`)."""
        ...
