"""whatsapp-web.js' auth state: the browser profile its RemoteAuth zips, kept in our
storage (local files or S3) so that a session survives restarts and can move between
instances, sealed under `ENCRYPTION_KEY` when one is set, as other engine auth state."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import structlog

from openwa.engines.whatsmeow.transfer import write_file
from openwa.kit.cipher import Cipher, token_kid
from openwa.storage.base import Storage
from openwa.storage.keys import profile_key

log = structlog.get_logger(__name__)

_SEALED = b"openwa-sealed:"


class ProfileStore:
    def __init__(self, storage: Storage, cipher: Cipher | None) -> None:
        self._storage = storage
        self._cipher = cipher

    @staticmethod
    def key(session_id: str) -> str:
        return profile_key(session_id)

    def _context(self, session_id: str) -> str:
        return f"webjs-profile:{session_id}"

    async def save(self, session_id: str, path: Path) -> None:
        """Keep the zip at `path` (the bridge's file, removed whether kept or not: a
        failed save leaves the one kept before, and the next save, a minute later,
        brings a new zip; kept here, one per minute per session piled up for as long as
        the storage refused them)."""
        try:
            data = await asyncio.to_thread(path.read_bytes)
            if self._cipher is not None:
                data = self._sealed(self._cipher, session_id, data)
            await self._storage.put(self.key(session_id), data, "application/zip")
        finally:
            path.unlink(missing_ok=True)

    def _sealed(self, cipher: Cipher, session_id: str, clear: bytes) -> bytes:
        return _SEALED + cipher.encrypt(clear, self._context(session_id)).encode()

    def _opened(self, session_id: str, token: str) -> bytes:
        if self._cipher is None:
            raise ValueError("the saved whatsapp-web.js profile is sealed: set ENCRYPTION_KEY")
        return self._cipher.decrypt(token, self._context(session_id))

    async def _read(self, session_id: str) -> bytes | None:
        chunks: list[bytes] = []
        try:
            async for chunk in self._storage.stream(self.key(session_id)):
                chunks.append(chunk)
        except FileNotFoundError:
            return None
        return b"".join(chunks)

    async def reseal(self, session_id: str, new: Cipher) -> bool:
        """The profile sealed with this store's key sealed again with `new` (`openwa
        keys rotate-encryption`: the database's values are rotated, and the profiles,
        kept in storage, with them); whether it was. One in clear, or already under
        `new`, or none, is left as it is."""
        data = await self._read(session_id)
        if data is None or not data.startswith(_SEALED):
            return False
        token = data[len(_SEALED) :].decode()
        if token_kid(token) == new.kid:
            return False
        sealed = self._sealed(new, session_id, self._opened(session_id, token))
        await self._storage.put(self.key(session_id), sealed, "application/zip")
        return True

    async def load(self, session_id: str, directory: Path) -> Path | None:
        """The saved profile as a private file in `directory`, or None when there is none.

        One in clear while `ENCRYPTION_KEY` is set is still handed back, and logged
        (`webjs_profile_in_clear`): a profile saved before the key was set is in clear
        until the session saves it again (sealed then: RemoteAuth saves once a minute
        while the session runs, and at its stop), and refusing it would unlink every
        such session. OpenWA writes none in clear under a key, and no message's media
        is stored at its key (`storage/keys.py`)."""
        data = await self._read(session_id)
        if data is None:
            return None
        if data.startswith(_SEALED):
            data = self._opened(session_id, data[len(_SEALED) :].decode())
        elif self._cipher is not None:
            log.warning("webjs_profile_in_clear", session_id=session_id)
        path = directory / f"profile-{secrets.token_hex(8)}.zip"
        await asyncio.to_thread(write_file, path, data)
        return path

    async def delete(self, session_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await self._storage.delete(self.key(session_id))
