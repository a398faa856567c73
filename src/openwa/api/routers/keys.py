"""API keys (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from openwa.api.deps import AdminDep, DbDep, PageDep, ReadDbDep, ServicesDep
from openwa.api.envelope import Deleted, Envelope, PageEnvelope, ok, paged
from openwa.keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated

router = APIRouter(prefix="/api/keys", tags=["keys"])

KeyId = Annotated[str, Path(max_length=40, description="The key's id (`key_...`)")]


@router.post("", status_code=201)
async def create_key(
    body: ApiKeyCreate, _: AdminDep, services: ServicesDep, db: DbDep
) -> Envelope[ApiKeyCreated]:
    """Create a key; the key itself is in this response only."""
    return ok(await services.keys.create(db, body))


@router.get("")
async def list_keys(
    _: AdminDep, services: ServicesDep, page: PageDep, db: ReadDbDep
) -> PageEnvelope[ApiKey]:
    """List keys (never the keys themselves)."""
    items, total = await services.keys.page(db, page)
    return paged(items, page, total)


@router.delete("/{key_id}")
async def delete_key(
    key_id: KeyId, _: AdminDep, services: ServicesDep, db: DbDep
) -> Envelope[Deleted]:
    """Delete a key; it stops working at once."""
    await services.keys.delete(db, key_id)
    return ok(Deleted(id=key_id))
