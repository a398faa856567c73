"""Dependencies of the HTTP edge, as `Annotated` aliases; services never see FastAPI."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from openwa.db.models import SessionRow
from openwa.errors import ValidationFailed
from openwa.keys.principal import Principal
from openwa.kit.names import is_session_ref
from openwa.kit.pagination import PageParams
from openwa.services import Services

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token")


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_principal(
    services: ServicesDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    raw = api_key or (bearer.credentials if bearer else None)
    return await services.keys.authenticate(raw)


def raw_api_key(request: Request) -> str | None:
    """The key from `X-API-Key` or `Authorization: Bearer`, for routes outside `/api`."""
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_writer(principal: PrincipalDep) -> Principal:
    principal.require_write()
    return principal


async def get_admin(principal: PrincipalDep) -> Principal:
    """Keys and instance-wide settings: an admin key that is not limited to sessions."""
    principal.require_admin()
    principal.require_unscoped()
    return principal


WriterDep = Annotated[Principal, Depends(get_writer)]
AdminDep = Annotated[Principal, Depends(get_admin)]


async def get_page(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1")] = 1,
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page, 1 to 100")] = 20,
) -> PageParams:
    return PageParams(page=page, limit=limit)


PageDep = Annotated[PageParams, Depends(get_page)]

SessionRef = Annotated[
    str,
    Path(
        max_length=64,
        description="The session's id (`ses_...`) or its unique name",
        examples=["sales-team"],
    ),
]


async def get_session(id: SessionRef, services: ServicesDep, principal: PrincipalDep) -> SessionRow:
    if not is_session_ref(id):
        raise ValidationFailed(
            details=[
                {"field": "path.id", "message": "not a session id or name", "type": "value_error"}
            ]
        )
    return await services.sessions.resolve(id, principal)


SessionDep = Annotated[SessionRow, Depends(get_session)]
