"""Dependencies of the HTTP edge, as `Annotated` aliases; services never see FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from openwa.api.authentication import authenticate
from openwa.audit.draft import note_session
from openwa.db.models import SessionRow
from openwa.db.unit_of_work import commit, mark_request_scoped
from openwa.errors import ValidationFailed
from openwa.keys.principal import Principal
from openwa.kit.names import is_session_ref
from openwa.kit.pagination import PageParams
from openwa.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work on the writer: committed once when the endpoint has
    returned and before the response is sent (`scope="function"`), so a 2xx means the
    rows are durable; rolled back when the endpoint raises. BEGIN waits for the first
    statement, so an endpoint that fails early never takes the write lock."""
    services: Services = request.app.state.services
    async with services.db() as db:
        mark_request_scoped(db)  # its commits carry the request's audit entry
        yield db  # an exception from the endpoint lands here: closing rolls back
        await commit(db)  # a failed commit: 503 NOT_READY, nothing written


async def get_read_db(request: Request) -> AsyncIterator[AsyncSession]:
    """A session on the reader (SQLite: deferred, `query_only`, beside the writer, so a
    read never queues for the write lock; PostgreSQL: the writer's pool). Never commits."""
    services: Services = request.app.state.services
    async with services.db_read() as db:
        yield db


DbDep = Annotated[AsyncSession, Depends(get_db, scope="function")]
ReadDbDep = Annotated[AsyncSession, Depends(get_read_db, scope="function")]


def raw_api_key(connection: HTTPConnection) -> str | None:
    """The key from `X-API-Key` or `Authorization: Bearer`: the one place keys are read
    from a request (the WebSocket adds its `openwa.key.` subprotocol and its `apiKey`
    query parameter)."""
    if key := connection.headers.get("x-api-key"):
        return key
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def get_principal(request: Request) -> Principal:
    # Read here rather than through FastAPI's security classes: each dependency costs
    # on every request. The schemes are declared in the OpenAPI document (api/docs.py).
    return await authenticate(request, raw_api_key(request))


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


async def resolve_session(services: Services, ref: str, principal: Principal) -> SessionRow:
    if not is_session_ref(ref):
        raise ValidationFailed(
            details=[
                {"field": "path.id", "message": "not a session id or name", "type": "value_error"}
            ]
        )
    session = await services.sessions.resolve(ref, principal)
    note_session(session.id)
    return session


async def get_session(id: SessionRef, services: ServicesDep, principal: PrincipalDep) -> SessionRow:
    return await resolve_session(services, id, principal)


SessionDep = Annotated[SessionRow, Depends(get_session)]
