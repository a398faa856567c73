"""Storage on obstore: `LocalStore` under `STORAGE_PATH`, or `S3Store` for any S3 server."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.store import LocalStore, S3Store

from openwa.kit.private_files import private_dir
from openwa.media.types import INLINE_SAFE, OCTET_STREAM, essence
from openwa.storage.keys import is_safe_key, is_safe_part

if TYPE_CHECKING:  # a name of the type stubs only
    from obstore import Attributes


# Listings of a prefix being deleted, at most: more would mean objects that keep coming.
_DELETE_ROUNDS = 5
# Where `/health/ready` writes its probe object.
_HEALTH = "health"


class ObjectStorage:
    def __init__(self, store: Any, kind: str, root: Path | None = None) -> None:
        self._store = store
        self.kind = kind
        self._root = root  # local files: the directory the keys are paths under

    @classmethod
    def local(cls, root: Path) -> ObjectStorage:
        private_dir(root)
        return cls(LocalStore(prefix=root.resolve(), mkdir=True), "local", root.resolve())

    @classmethod
    def s3(
        cls,
        *,
        bucket: str,
        endpoint: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str,
        force_path_style: bool,
    ) -> ObjectStorage:
        config: dict[str, Any] = {"region": region}
        if endpoint:
            config["endpoint"] = endpoint
        if access_key_id and secret_access_key:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        config["virtual_hosted_style_request"] = not force_path_style
        allow_http = bool(endpoint and endpoint.startswith("http://"))
        store = S3Store(bucket, client_options={"allow_http": allow_http}, **config)
        return cls(store, "s3")

    @staticmethod
    def _checked(key: str) -> str:
        if not is_safe_key(key):
            raise ValueError(f"unsafe storage key {key!r}")
        return key

    async def put(self, key: str, source: bytes | Path, content_type: str) -> None:
        # Local files keep no attributes (the content type lives with the message).
        attributes = _served_as(content_type) if self.kind == "s3" else None
        # 5 MB parts, two at a time: bounded memory whatever the object's size.
        await obstore.put_async(
            self._store,
            self._checked(key),
            source,
            attributes=attributes,
            chunk_size=5 * 1024 * 1024,
            max_concurrency=2,
        )

    async def copy(self, source: str, target: str) -> None:
        await obstore.copy_async(self._store, self._checked(source), self._checked(target))
        if self._root is not None:
            # Local files: the copy is a hard link, as old as its source; it is written
            # now (the sweep of files no message refers to goes by that age). The source
            # is touched too, harmlessly.
            with contextlib.suppress(OSError):
                os.utime(self._root / target)

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        result = await obstore.get_async(self._store, self._checked(key))
        async for chunk in result.stream(min_chunk_size=256 * 1024):
            yield bytes(chunk)

    async def delete(self, key: str) -> None:
        await obstore.delete_async(self._store, self._checked(key))

    async def delete_under(self, prefix: str) -> int:
        under = _prefixed(prefix)
        deleted = 0
        for _round in range(_DELETE_ROUNDS):
            # Listed again until empty: one listing need not see what came meanwhile.
            found = 0
            async for batch in obstore.list(self._store, prefix=under, chunk_size=500):
                paths = [meta["path"] for meta in batch]
                try:
                    await obstore.delete_async(self._store, paths)
                except FileNotFoundError:
                    # Local files: one gone meanwhile (retention) fails the batch.
                    for path in paths:
                        with contextlib.suppress(FileNotFoundError):
                            await obstore.delete_async(self._store, path)
                found += len(paths)
            deleted += found
            if not found:
                break
        if self._root is not None:
            with contextlib.suppress(OSError):  # the directory the files were in
                (self._root / prefix).rmdir()
        return deleted

    async def listed(self, prefix: str, before: datetime) -> AsyncGenerator[list[str], None]:
        async for batch in obstore.list(self._store, prefix=_prefixed(prefix), chunk_size=500):
            keys = [meta["path"] for meta in batch if meta["last_modified"] < before]
            if keys:
                yield keys

    async def presign(self, key: str, expires_s: int) -> str | None:
        if self.kind != "s3":
            return None
        return str(
            await obstore.sign_async(
                self._store, "GET", self._checked(key), timedelta(seconds=expires_s)
            )
        )

    async def check(self) -> None:
        probe = f"{_HEALTH}/{uuid.uuid4().hex}.txt"
        await obstore.put_async(self._store, probe, b"ok")
        await obstore.delete_async(self._store, probe)
        if self._root is not None:
            # Local files: the probe's directory goes too (another probe may be in it).
            with contextlib.suppress(OSError):
                (self._root / _HEALTH).rmdir()


def _prefixed(prefix: str) -> str:
    """What a listing of a session's files asks for: `{sessionId}/`, a safe id only."""
    if not is_safe_part(prefix):
        raise ValueError(f"unsafe storage prefix {prefix!r}")
    return f"{prefix}/"


def _served_as(content_type: str) -> Attributes:
    """What S3 serves an object with. A presigned link (`S3_PRESIGN`) hands the object
    to browsers straight from the bucket, without the media route's `nosniff`, sandbox
    and `attachment` headers: so anything a browser might run (HTML, SVG, PDF, ...) is
    stored as an opaque attachment, and only what renders safely keeps its type. The
    message keeps the real type; the API's own route serves from that."""
    if essence(content_type) in INLINE_SAFE:
        return {"Content-Type": content_type}
    return {"Content-Type": OCTET_STREAM, "Content-Disposition": "attachment"}
