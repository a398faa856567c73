"""How events and responses point at stored media."""

from __future__ import annotations

from typing import Any

from openwa.storage.base import Storage

PRESIGN_EXPIRES_S = 7 * 24 * 3600


class MediaLinks:
    def __init__(self, storage: Storage, public_url: str, *, presign: bool) -> None:
        self._storage = storage
        self._public_url = public_url.rstrip("/")
        self._presign = presign

    async def describe(
        self, session_id: str, message_id: str, media: dict[str, Any]
    ) -> dict[str, Any]:
        """`{url, mimetype, size, filename?}` for events: our route, or a presigned S3 URL."""
        url = None
        if self._presign:
            url = await self._storage.presign(media["key"], PRESIGN_EXPIRES_S)
        if url is None:
            url = f"{self._public_url}/api/sessions/{session_id}/messages/{message_id}/media"
        described = {"url": url, "mimetype": media["mimetype"], "size": media["size"]}
        if media.get("filename"):
            described["filename"] = media["filename"]
        return described
