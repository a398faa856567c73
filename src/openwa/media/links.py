"""The one place that says where a message's media can be downloaded.

REST answers (a message, a chat's history, an accepted send), events and webhook
payloads all describe media through `MediaLinks.view`, so a client finds the same link
for a message wherever it reads it.
"""

from __future__ import annotations

from typing import Any

from openwa.storage.base import Storage

PRESIGN_EXPIRES_S = 7 * 24 * 3600


def media_route(session_id: str, message_id: str) -> str:
    """The path of the route that serves a message's stored media (needs a key)."""
    return f"/api/sessions/{session_id}/messages/{message_id}/media"


class MediaLinks:
    def __init__(self, storage: Storage, public_url: str, *, presign: bool) -> None:
        self._storage = storage
        self._public_url = public_url.rstrip("/")
        self._presign = presign

    async def url(self, session_id: str, message_id: str, key: str) -> str:
        """`{PUBLIC_URL}` + the media route, or a presigned S3 URL with `S3_PRESIGN`
        (each presigned link is signed when it is made, so two reads give two links
        to the same object)."""
        if self._presign:
            signed = await self._storage.presign(key, PRESIGN_EXPIRES_S)
            if signed is not None:
                return signed
        return self._public_url + media_route(session_id, message_id)

    async def view(
        self, session_id: str, message_id: str, media: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """A stored message's media (`content["media"]`) as clients see it: `{url,
        mimetype, size, filename?}`, or `{deleted, mimetype, size}` once retention has
        removed the bytes; never our storage key."""
        if not media:
            return None
        if not media.get("key"):
            return {"deleted": True, "mimetype": media.get("mimetype"), "size": media.get("size")}
        view = {
            "url": await self.url(session_id, message_id, media["key"]),
            "mimetype": media["mimetype"],
            "size": media["size"],
        }
        if media.get("filename"):
            view["filename"] = media["filename"]
        return view
