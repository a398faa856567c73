"""Key management and request authentication."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cache.base import Cache
from openwa.db.engine import on_commit
from openwa.db.models import ApiKeyRow
from openwa.db.unit_of_work import after_commit_await
from openwa.errors import KeyNotFound, Unauthorized, ValidationFailed
from openwa.keys.principal import Principal, Role
from openwa.keys.repository import ApiKeyRepository
from openwa.keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated
from openwa.keys.secrets import display_prefix, generate_key, hash_key
from openwa.kit.clock import utcnow
from openwa.kit.ids import new_id
from openwa.kit.pagination import PageParams
from openwa.sessions.repository import SessionRepository

log = structlog.get_logger(__name__)

# How long a key lookup is cached. Deleting a key evicts it at once (everywhere, with
# Redis); this bounds only what another process could still see.
_AUTH_TTL_S = 30.0


def _cache_key(key_hash: str) -> str:
    return f"apikey:{key_hash}"


def _to_schema(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        prefix=row.prefix,
        sessions=row.sessions,
        source=row.source,
        created_at=row.created_at,
    )


def _new_row(name: str, role: Role, key: str, source: str, sessions: list[str] | None) -> ApiKeyRow:
    return ApiKeyRow(
        id=new_id("key"),
        name=name,
        role=role.value,
        key_hash=hash_key(key),
        prefix=display_prefix(key),
        sessions=sessions,
        source=source,
        created_at=utcnow(),
    )


class KeyService:
    """Key use cases on the caller's unit of work. Only authentication reads on its own
    (the reader, on a cache miss): it runs before a request knows whether it needs one."""

    def __init__(self, cache: Cache, *, read: async_sessionmaker[AsyncSession]) -> None:
        self._read = read
        self._cache = cache
        self._revocation_listeners: list[Callable[[str], None]] = []

    def add_revocation_listener(self, listener: Callable[[str], None]) -> None:
        """`listener(key_id)` runs once a change that ends a key's validity commits
        (the live streams registry: a key's open WebSocket and SSE streams end)."""
        self._revocation_listeners.append(listener)

    def _revoke_on_commit(self, db: AsyncSession, key_id: str) -> None:
        """The one place a key stops being valid for what is already open: deletion now;
        a change of role or scope, or an expiry, must come through here too."""

        def revoke() -> None:
            for listener in self._revocation_listeners:
                listener(key_id)

        on_commit(db, revoke, key=("revoke-key", key_id))

    async def authenticate(self, raw_key: str | None) -> Principal:
        if not raw_key:
            raise Unauthorized("send the API key in X-API-Key or Authorization: Bearer")
        key_hash = hash_key(raw_key)
        cached = await self._cached(key_hash)
        if cached is not None:
            data = orjson.loads(cached)
        else:
            async with self._read() as db:
                row = await ApiKeyRepository(db).by_hash(key_hash)
            if row is None:
                raise Unauthorized("unknown API key")
            data = {"id": row.id, "name": row.name, "role": row.role, "sessions": row.sessions}
            with contextlib.suppress(Exception):  # a cache that is down only costs speed
                await self._cache.set(_cache_key(key_hash), orjson.dumps(data), _AUTH_TTL_S)
        sessions = data["sessions"]
        return Principal(
            key_id=data["id"],
            name=data["name"],
            role=Role(data["role"]),
            sessions=frozenset(sessions) if sessions is not None else None,
        )

    async def _cached(self, key_hash: str) -> bytes | None:
        try:
            return await self._cache.get(_cache_key(key_hash))
        except Exception:
            log.warning("cache_unavailable", during="authentication")
            return None

    async def create(self, db: AsyncSession, data: ApiKeyCreate) -> ApiKeyCreated:
        key = generate_key()
        sessions = None
        if data.sessions is not None:
            found = await SessionRepository(db).ids(data.sessions)
            unknown = [ref for ref in data.sessions if ref not in found]
            if unknown:
                raise ValidationFailed(
                    "unknown sessions",
                    details=[
                        {"field": "body.sessions", "message": f"no session {ref!r}"}
                        for ref in unknown
                    ],
                )
            sessions = sorted(set(found.values()))
        row = _new_row(data.name, data.role, key, "api", sessions)
        ApiKeyRepository(db).add(row)
        return ApiKeyCreated(**_to_schema(row).model_dump(), key=key)

    async def page(self, db: AsyncSession, params: PageParams) -> tuple[list[ApiKey], int]:
        rows, total = await ApiKeyRepository(db).page(params)
        return [_to_schema(row) for row in rows], total

    async def delete(self, db: AsyncSession, key_id: str) -> None:
        repo = ApiKeyRepository(db)
        row = await repo.get(key_id)
        if row is None:
            raise KeyNotFound(details={"id": key_id})
        await repo.delete(row)
        self._evict_after_commit(db, row.key_hash)
        self._revoke_on_commit(db, key_id)

    def _evict_after_commit(self, db: AsyncSession, key_hash: str) -> None:
        # After the commit, not before: a request authenticating in between would read
        # the key (still committed) and cache it again for the whole TTL.
        async def evict() -> None:
            await self._cache.delete(_cache_key(key_hash))

        after_commit_await(db, evict)

    async def bootstrap(self, db: AsyncSession, api_key: str | None) -> str | None:
        """Make sure an admin key exists; return a generated one to print, once.

        Runs under the migration lock, so instances started together create one key.
        With `API_KEY` set, that key is the admin key (replacing an earlier `API_KEY`).
        """
        repo = ApiKeyRepository(db)
        if api_key is not None:
            if await repo.by_hash(hash_key(api_key)) is None:
                for old_id, old_hash in await repo.delete_by_source("env"):
                    self._evict_after_commit(db, old_hash)
                    self._revoke_on_commit(db, old_id)
                repo.add(_new_row("API_KEY", Role.ADMIN, api_key, "env", None))
            return None
        if await repo.admin_exists():
            return None
        key = generate_key()
        repo.add(_new_row("generated admin key", Role.ADMIN, key, "generated", None))
        return key
