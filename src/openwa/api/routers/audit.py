"""The audit log (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from openwa.api.deps import AdminDep, PageDep, ReadDbDep, ServicesDep
from openwa.api.envelope import PageEnvelope, paged
from openwa.api.routing import api_router
from openwa.audit.schemas import AuditEntry, AuditFilters
from openwa.kit.schema import UtcDatetime

router = api_router("/api/audit", ["audit"])


@router.get("")
async def list_audit(
    _: AdminDep,
    services: ServicesDep,
    page: PageDep,
    db: ReadDbDep,
    key_id: Annotated[
        str | None, Query(alias="keyId", max_length=40, description="Only this key's calls")
    ] = None,
    session_id: Annotated[
        str | None,
        Query(alias="sessionId", max_length=40, description="Only calls on this session (its id)"),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only this operation (e.g. `create_session`, `key_first_use`)",
        ),
    ] = None,
    since: Annotated[
        UtcDatetime | None,
        Query(description="Only entries at or after this time (ISO 8601 with an offset)"),
    ] = None,
) -> PageEnvelope[AuditEntry]:
    """Mutating calls and first uses of keys from new addresses, newest first."""
    filters = AuditFilters(key_id=key_id, session_id=session_id, action=action, since=since)
    items, total = await services.audit.page(db, filters, page)
    return paged(items, page, total)
