"""API keys: managed by admin keys; every key may read its own."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from openwa.api.deps import AdminDep, DbDep, PageDep, PrincipalDep, ReadDbDep, ServicesDep
from openwa.api.envelope import Deleted, Envelope, PageEnvelope, ok, paged
from openwa.api.responses import Answer, errors
from openwa.api.routing import api_router
from openwa.keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyUpdate

router = api_router("/api/keys", ["keys"])

KeyId = Annotated[str, Path(max_length=40, description="The key's id (`key_...`)")]
# Taking away the last admin key that is on every session and never expires.
_LAST_ADMIN = Answer(
    400, "VALIDATION_ERROR", "the instance's last admin key that is on every session ..."
)


@router.post("", status_code=201)
async def create_key(
    body: ApiKeyCreate, _: AdminDep, services: ServicesDep, db: DbDep
) -> Envelope[ApiKeyCreated]:
    """Create a key, optionally expiring or limited to client networks; the key itself
    is in this response only."""
    return ok(await services.keys.create(db, body))


@router.get("")
async def list_keys(
    _: AdminDep, services: ServicesDep, page: PageDep, db: ReadDbDep
) -> PageEnvelope[ApiKey]:
    """List keys (never the keys themselves)."""
    items, total = await services.keys.page(db, page)
    return paged(items, page, total)


@router.get("/self")
async def own_key(
    principal: PrincipalDep, services: ServicesDep, db: ReadDbDep
) -> Envelope[ApiKey]:
    """The calling key itself (any role): id, name, role, sessions, expiry, networks."""
    return ok(await services.keys.own(db, principal))


@router.patch("/{key_id}", responses=errors(_LAST_ADMIN))
async def update_key(
    key_id: KeyId, body: ApiKeyUpdate, _: AdminDep, services: ServicesDep, db: DbDep
) -> Envelope[ApiKey]:
    """Change a key's name, role, sessions, `expiresAt` or `allowedCidrs` (fields left out
    stay). Its open WebSocket and SSE streams end. Taking away the last admin key that is
    on every session and never expires is a 400 `VALIDATION_ERROR`."""
    return ok(await services.keys.update(db, key_id, body))


@router.delete("/{key_id}", responses=errors(_LAST_ADMIN))
async def delete_key(
    key_id: KeyId, _: AdminDep, services: ServicesDep, db: DbDep
) -> Envelope[Deleted]:
    """Delete a key; it stops working at once, and its open streams end. The last admin
    key that is on every session and never expires cannot be deleted (400)."""
    await services.keys.delete(db, key_id)
    return ok(Deleted(id=key_id))
