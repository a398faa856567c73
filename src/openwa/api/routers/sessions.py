"""Sessions: create, read, configure, lifecycle, QR and pairing code."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Request
from fastapi.responses import Response

from openwa.api.authentication import authenticate
from openwa.api.deps import (
    DbDep,
    PageDep,
    PrincipalDep,
    ServicesDep,
    SessionDep,
    SessionRef,
    WriterDep,
    raw_api_key,
    resolve_session,
)
from openwa.api.envelope import Deleted, Envelope, PageEnvelope, ok, ok_json, paged
from openwa.api.responses import ENGINE_CALL, errors
from openwa.api.routing import api_router
from openwa.errors import (
    NotSupported,
    QrNotAvailable,
    SessionExists,
    SessionLimitReached,
    WebhookLimitReached,
    WebhookUrlForbidden,
)
from openwa.services import Services
from openwa.sessions.schemas import (
    PairingCode,
    PairingCodeRequest,
    QrCode,
    Session,
    SessionCreate,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
)

router = api_router("/api/sessions", ["sessions"])
# The hottest read, tried before every other route (`create_app` puts it first).
first = api_router("/api/sessions", ["sessions"])

# Starting needs room on the instance and an engine that is installed here.
_START = (SessionLimitReached, NotSupported)


@router.post(
    "",
    status_code=201,
    responses=errors(SessionExists, *_START, WebhookUrlForbidden),
)
async def create_session(
    body: SessionCreate, principal: WriterDep, services: ServicesDep, db: DbDep
) -> Envelope[SessionCreated]:
    """Create a session (started at once unless `autoStart` is false)."""
    principal.require_unscoped()
    return ok(await services.sessions.create(db, body))


@router.get("")
async def list_sessions(
    principal: PrincipalDep, services: ServicesDep, page: PageDep
) -> PageEnvelope[Session]:
    """List the sessions this key may see, oldest first."""
    items, total = await services.sessions.page(page, principal)
    return paged(items, page, total)


@first.get("/{id}", response_model=Envelope[Session])
async def get_session(request: Request, id: SessionRef) -> Response:
    """One session by id or name."""
    # The hottest read: no dependencies beyond the path (each costs on every request),
    # and the session's JSON rendered once per change by the session directory.
    services: Services = request.app.state.services
    principal = await authenticate(request, raw_api_key(request))
    session = await resolve_session(services, id, principal)
    return ok_json(services.sessions.get_json(session))


@router.patch("/{id}", responses=errors(WebhookUrlForbidden, WebhookLimitReached))
async def update_session(
    body: SessionUpdate, _: WriterDep, session: SessionDep, services: ServicesDep, db: DbDep
) -> Envelope[SessionUpdated]:
    """Change the session's config; `reconnectRequired` says when a restart applies it."""
    return ok(await services.sessions.update(db, session.id, body.config))


@router.delete("/{id}")
async def delete_session(
    _: WriterDep, session: SessionDep, services: ServicesDep, db: DbDep
) -> Envelope[Deleted]:
    """Stop, log out and delete the session with its data and auth state."""
    await services.sessions.delete(db, session.id)
    return ok(Deleted(id=session.id))


@router.post("/{id}/start", responses=errors(*_START))
async def start_session(
    _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[Session]:
    """Start the session (restores the linked device, or shows a QR)."""
    return ok(await services.sessions.start(session.id))


@router.post("/{id}/stop")
async def stop_session(
    _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[Session]:
    """Stop the session and keep the linked device."""
    return ok(await services.sessions.stop(session.id))


@router.post("/{id}/restart", responses=errors(*_START))
async def restart_session(
    _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[Session]:
    """Stop and start again."""
    return ok(await services.sessions.restart(session.id))


@router.post("/{id}/logout")
async def logout_session(
    _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[Session]:
    """Forget the linked device; the next start shows a new QR."""
    return ok(await services.sessions.logout(session.id))


@router.get(
    "/{id}/qr",
    response_model=Envelope[QrCode],
    responses={
        **errors(QrNotAvailable),
        200: {"content": {"image/png": {}}, "description": "JSON, or the PNG on Accept: image/png"},
    },
)
async def get_qr(
    session: SessionDep,
    services: ServicesDep,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Envelope[QrCode] | Response:
    """The QR code to scan while the session is `qr_ready`."""
    if accept and "image/png" in accept and "application/json" not in accept:
        return Response(await services.sessions.qr_png(session.id), media_type="image/png")
    return ok(await services.sessions.qr(session.id))


@router.post("/{id}/pairing-code", responses=errors(*ENGINE_CALL))
async def pairing_code(
    body: PairingCodeRequest, _: WriterDep, session: SessionDep, services: ServicesDep
) -> Envelope[PairingCode]:
    """Link by phone number: type the returned code on the phone."""
    code = await services.sessions.pairing_code(session.id, body.phone_number)
    return ok(PairingCode(code=code))
