"""Key management and request authentication."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
import structlog
from pydantic.alias_generators import to_camel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from openwa.cache.base import Cache
from openwa.db.engine import on_commit
from openwa.db.models import ApiKeyRow
from openwa.db.unit_of_work import after_commit_await
from openwa.errors import KeyNotFound, Unauthorized, ValidationFailed
from openwa.keys.networks import parse_networks
from openwa.keys.principal import Principal, Role
from openwa.keys.repository import ApiKeyRepository
from openwa.keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyUpdate
from openwa.keys.secrets import display_prefix, generate_key, hash_key
from openwa.kit.clock import utcnow
from openwa.kit.ids import new_id
from openwa.kit.pagination import PageParams
from openwa.ratelimits.port import LookingUp
from openwa.sessions.repository import SessionRepository

log = structlog.get_logger(__name__)

# How long a key lookup is cached. Deleting a key evicts it at once (everywhere, with
# Redis); this bounds only what another process could still see.
_AUTH_TTL_S = 30.0
# What an evicted key's cache entry holds for a TTL: a lookup that read the row before
# the change committed must not cache it after the eviction (for a deleted admin key,
# 30 s more of use, a new admin key included: found by an audit). Lookups fill the
# cache only where it holds nothing (`add`), so they never overwrite this; while it is
# there they read the database.
_EVICTED = b"evicted"
# Parsed principals kept by their cached entry (a frozen Principal is shared by requests).
_PARSED_MAX = 1024


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
        expires_at=row.expires_at,
        allowed_cidrs=row.allowed_cidrs,
    )


def _cached_form(row: ApiKeyRow) -> dict[str, Any]:
    """What authentication needs of a key, as kept in the cache (JSON)."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "sessions": row.sessions,
        # Full precision: a principal read from the cache must equal one built from the row.
        "expiresAt": row.expires_at.isoformat() if row.expires_at is not None else None,
        "allowedCidrs": row.allowed_cidrs,
    }


def _principal(data: dict[str, Any]) -> Principal:
    sessions = data["sessions"]
    expires_at = data.get("expiresAt")
    cidrs = data.get("allowedCidrs")
    return Principal(
        key_id=data["id"],
        name=data["name"],
        role=Role(data["role"]),
        sessions=frozenset(sessions) if sessions is not None else None,
        expires_at=datetime.fromisoformat(expires_at) if expires_at is not None else None,
        networks=parse_networks(tuple(cidrs)) if cidrs is not None else None,
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


def _lasting_admin(role: str, sessions: list[str] | None, expires_at: datetime | None) -> bool:
    """A key that can manage keys for good: admin, on every session, never expiring."""
    return role == Role.ADMIN.value and sessions is None and expires_at is None


RevocationListener = Callable[[str, Principal | None], None]


# The instance must keep one lasting admin key: without it nobody could manage keys
# again (a restart makes a new admin key only when no admin key exists at all).
_LAST_ADMIN = (
    "the instance's last admin key that is on every session and never expires; "
    "create another such key first"
)


class KeyService:
    """Key use cases on the caller's unit of work. Only authentication reads on its own
    (the reader, on a cache miss): it runs before a request knows whether it needs one."""

    def __init__(self, cache: Cache, *, read: async_sessionmaker[AsyncSession]) -> None:
        self._read = read
        self._cache = cache
        self._parsed: dict[bytes, Principal] = {}
        self._revocation_listeners: list[RevocationListener] = []

    def add_revocation_listener(self, listener: RevocationListener) -> None:
        """`listener(key_id, successor)` runs once a change that ends what a key has open
        commits (the live streams registry: the key's WebSocket and SSE streams end).
        `successor` is the key as it is now (None: deleted): streams opened with exactly
        that key may stay, streams opened before the change may not."""
        self._revocation_listeners.append(listener)

    def _revoke_on_commit(
        self, db: AsyncSession, key_id: str, successor: Principal | None = None
    ) -> None:
        """The one place a key stops being valid for what is already open: deletion, and
        a change (PATCH) of anything the key's streams were opened with. An expiry needs
        no change: each stream ends itself when its key's `expiresAt` passes."""

        def revoke() -> None:
            for listener in self._revocation_listeners:
                listener(key_id, successor)

        on_commit(db, revoke, key=("revoke-key", key_id))

    async def current(self, key_id: str) -> Principal | None:
        """The key as committed now (None: deleted): what another instance changed."""
        async with self._read() as db:
            row = await ApiKeyRepository(db).get(key_id)
        return _principal(_cached_form(row)) if row is not None else None

    async def authenticate(
        self, raw_key: str | None, address: str | None, looking_up: LookingUp | None = None
    ) -> Principal:
        """The key's principal, if the key is known, unexpired, and used from one of its
        networks (`address`: the client's, see `api.deps.client_address`).
        `looking_up` wraps the trip to the database of a key the cache did not know (the
        limit of failed authentications counts those meanwhile)."""
        if not raw_key:
            raise Unauthorized("send the API key in X-API-Key or Authorization: Bearer")
        key_hash = hash_key(raw_key)
        cached = await self._cached(key_hash)
        if cached is not None and cached != _EVICTED:
            principal = self._parsed.get(cached) or self._parse(cached)
        else:
            trip = looking_up() if looking_up is not None else contextlib.nullcontext()
            async with trip, self._read() as db:
                row = await ApiKeyRepository(db).by_hash(key_hash)
            if row is None:
                raise Unauthorized("unknown API key")
            data = _cached_form(row)
            if cached is None:
                with contextlib.suppress(Exception):  # a cache that is down only costs speed
                    await self._cache.add(_cache_key(key_hash), orjson.dumps(data), _AUTH_TTL_S)
            principal = _principal(data)
        principal.require_usable(utcnow(), address)
        return principal

    def _parse(self, cached: bytes) -> Principal:
        """The principal of a cached entry, kept by the entry's bytes: they hold all it is
        made of, so a changed key (a new entry) can never get an old principal."""
        principal = _principal(orjson.loads(cached))
        if len(self._parsed) >= _PARSED_MAX:
            self._parsed.clear()
        self._parsed[cached] = principal
        return principal

    async def _cached(self, key_hash: str) -> bytes | None:
        try:
            return await self._cache.get(_cache_key(key_hash))
        except Exception:
            log.warning("cache_unavailable", during="authentication")
            return None

    @staticmethod
    async def _scope(db: AsyncSession, refs: list[str] | None) -> list[str] | None:
        """Session ids or names as the sorted ids a key is limited to (None: all)."""
        if refs is None:
            return None
        found = await SessionRepository(db).ids(refs)
        unknown = [ref for ref in refs if ref not in found]
        if unknown:
            raise ValidationFailed(
                "unknown sessions",
                details=[
                    {"field": "body.sessions", "message": f"no session {ref!r}"} for ref in unknown
                ],
            )
        return sorted(set(found.values()))

    async def create(self, db: AsyncSession, data: ApiKeyCreate) -> ApiKeyCreated:
        key = generate_key()
        row = _new_row(data.name, data.role, key, "api", await self._scope(db, data.sessions))
        row.expires_at = data.expires_at
        row.allowed_cidrs = data.allowed_cidrs
        ApiKeyRepository(db).add(row)
        return ApiKeyCreated(**_to_schema(row).model_dump(), key=key)

    async def own(self, db: AsyncSession, principal: Principal) -> ApiKey:
        """The caller's own key (`GET /api/keys/self`)."""
        row = await ApiKeyRepository(db).get(principal.key_id)
        if row is None:  # deleted since it was authenticated (from the cache)
            raise Unauthorized("unknown API key")
        return _to_schema(row)

    async def update(self, db: AsyncSession, key_id: str, data: ApiKeyUpdate) -> ApiKey:
        """A partial change. Once it commits, the key's open streams end and its cached
        lookup is evicted, so nothing keeps the old role, scope or limits."""
        repo = ApiKeyRepository(db)
        row, others = await self._held(repo, key_id)
        changed = data.model_fields_set
        if not changed:
            return _to_schema(row)
        before = _principal(_cached_form(row))
        if data.name is not None:
            row.name = data.name
        if data.role is not None:
            row.role = data.role.value
        if "sessions" in changed:
            row.sessions = await self._scope(db, data.sessions)
        if "expires_at" in changed:
            row.expires_at = data.expires_at
        if "allowed_cidrs" in changed:
            row.allowed_cidrs = data.allowed_cidrs
        if others == [] and not _lasting_admin(row.role, row.sessions, row.expires_at):
            field = next(f for f in ("role", "sessions", "expires_at") if f in changed)
            raise ValidationFailed(
                _LAST_ADMIN,
                details=[{"field": f"body.{to_camel(field)}", "message": _LAST_ADMIN}],
            )
        self._evict_after_commit(db, row.key_hash)
        after = _principal(_cached_form(row))
        # A rename changes nothing a stream was allowed: its streams stay open.
        if replace(after, name=before.name) != before:
            self._revoke_on_commit(db, key_id, after)
        return _to_schema(row)

    @staticmethod
    async def _held(repo: ApiKeyRepository, key_id: str) -> tuple[ApiKeyRow, list[str] | None]:
        """The key, held to be changed or deleted, and the ids of the lasting admin keys
        besides it, locked; None when it is not one itself (then no change of it can
        take the last one away).

        The admin keys are locked first, in the order of their ids, then the key: every
        change of a key takes its locks in this one order, so two never wait on each
        other, and one deleted or changed by another call meanwhile is read as it is now
        (PostgreSQL; SQLite runs one writer at a time)."""
        admins = await repo.lock_admins()
        row = await repo.get_held(key_id, held="to change")
        if row is None:
            raise KeyNotFound(details={"id": key_id})
        if not _lasting_admin(row.role, row.sessions, row.expires_at):
            return row, None
        return row, [
            other
            for other, sessions, expires_at in admins
            if other != row.id and _lasting_admin(Role.ADMIN.value, sessions, expires_at)
        ]

    async def page(self, db: AsyncSession, params: PageParams) -> tuple[list[ApiKey], int]:
        rows, total = await ApiKeyRepository(db).page(params)
        return [_to_schema(row) for row in rows], total

    async def delete(self, db: AsyncSession, key_id: str) -> None:
        repo = ApiKeyRepository(db)
        row, others = await self._held(repo, key_id)
        if others == []:
            raise ValidationFailed(
                _LAST_ADMIN, details=[{"field": "path.key_id", "message": _LAST_ADMIN}]
            )
        await repo.delete(row)
        self._evict_after_commit(db, row.key_hash)
        self._revoke_on_commit(db, key_id)

    def _evict_after_commit(self, db: AsyncSession, key_hash: str, *, mark: bool = True) -> None:
        # After the commit, not before: a request authenticating in between would read
        # the key (still committed) and cache it again for the whole TTL. And as a mark
        # for the TTL (`_EVICTED`), not a delete: a lookup that read the row before the
        # commit may write its entry after this.
        async def evict() -> None:
            if mark:
                await self._cache.set(_cache_key(key_hash), _EVICTED, _AUTH_TTL_S)
            else:
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
                # A shared cache may still hold this key's row from an earlier database
                # under the same address (dropped and made again): the new row wins. A
                # plain delete: no lookup can have read a row this key did not have.
                self._evict_after_commit(db, hash_key(api_key), mark=False)
            return None
        if await repo.admin_exists():
            return None
        key = generate_key()
        repo.add(_new_row("generated admin key", Role.ADMIN, key, "generated", None))
        return key
