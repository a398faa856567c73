"""Session use cases: what the HTTP edge (and the CLI) may ask of sessions."""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import SessionRow, WebhookRow
from openwa.db.retry import again_if_deadlocked
from openwa.db.unit_of_work import commit
from openwa.engines.base import PairingNotAvailable
from openwa.engines.registry import EngineRegistry
from openwa.errors import (
    EngineError,
    Forbidden,
    NotSupported,
    OwnedElsewhere,
    QrNotAvailable,
    SessionExists,
    SessionLimitReached,
    SessionNotFound,
    SessionNotReady,
)
from openwa.events.log import EventLog
from openwa.keys.principal import Principal
from openwa.kit.addresses import check_proxy
from openwa.kit.clock import utcnow
from openwa.kit.ids import new_id
from openwa.kit.pagination import PageParams
from openwa.kit.phone import normalize_phone
from openwa.media.sweep import delete_prefix
from openwa.sessions.directory import SessionDirectory
from openwa.sessions.qr import qr_data_url, qr_png
from openwa.sessions.records import SessionRecords
from openwa.sessions.removal import SessionRemoval
from openwa.sessions.repository import SessionRepository
from openwa.sessions.runtime import SessionRuntime
from openwa.sessions.schemas import (
    QrCode,
    Session,
    SessionConfig,
    SessionConfigView,
    SessionCreate,
    SessionCreated,
    SessionUpdated,
    StatusChange,
    mask_proxy,
)
from openwa.sessions.status import Status, is_running
from openwa.storage.base import Storage
from openwa.webhooks.schemas import WebhookCreate
from openwa.webhooks.service import WebhookService, as_configured, with_secret

# Config fields that an engine reads only when it connects.
_RECONNECT_FIELDS = {"proxy", "markOnline"}


def to_schema(row: SessionRow) -> Session:
    config = dict(row.config or {})
    if config.get("proxy"):
        config["proxy"] = mask_proxy(config["proxy"])
    return Session(
        id=row.id,
        name=row.name,
        engine=row.engine,
        status=Status(row.status),
        status_history=[StatusChange.model_validate(item) for item in row.status_history],
        phone_number=row.phone_number,
        push_name=row.push_name,
        config=SessionConfigView.model_validate(config),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_error=row.last_error,
    )


def _render(row: SessionRow) -> bytes:
    return Session.__pydantic_serializer__.to_json(to_schema(row), by_alias=True)


def _config_dict(config: SessionConfig) -> dict[str, Any]:
    # Webhooks given in the config are stored as webhooks, not in the config.
    return config.model_dump(by_alias=True, exclude_none=True, exclude={"webhooks"})


log = structlog.get_logger(__name__)

# How long a session's delete waits for its media to be deleted from the store.
_FORGET_MEDIA_S = 15.0


class SessionService:
    """Session use cases. Reads come from the in-memory directory; writes go to the
    caller's unit of work. The runtime supervises sessions from committed rows (in units
    of work of its own), so a write the runtime must see (a new session it starts, a
    config it connects with, a row it forgets) commits that unit of work early, under
    the session's lock; the caller's final commit then has nothing left to do."""

    def __init__(
        self,
        runtime: SessionRuntime,
        engines: EngineRegistry,
        events: EventLog,
        webhooks: WebhookService,
        directory: SessionDirectory,
        media: Storage,
        removal: SessionRemoval,
        *,
        proxy_allow_private: bool = False,
    ) -> None:
        self._proxy_allow_private = proxy_allow_private
        # Public: tests set its batch size.
        self.removal = removal
        self._media = media
        self._directory = directory
        self._runtime = runtime
        self._engines = engines
        self._records = SessionRecords(events)
        self._webhooks = webhooks

    async def resolve(self, ref: str, principal: Principal) -> SessionRow:
        """The session `ref` names, if this key may touch it (403 before 404 for scoped keys)."""
        row = self._directory.resolve(ref)
        if row is None:
            if principal.sessions is not None:
                raise Forbidden("this key may not touch that session", details={"session": ref})
            raise SessionNotFound(details={"session": ref})
        if not principal.may_see(row.id):
            raise Forbidden("this key may not touch that session", details={"session": ref})
        return row

    async def create(self, db: AsyncSession, data: SessionCreate) -> SessionCreated:
        engine_name = data.engine or self._engines.default
        self._engines.get(engine_name)
        if data.auto_start and not self._runtime.has_room():
            self._runtime.raise_no_room()
        if data.config.proxy:
            await check_proxy(data.config.proxy, self._proxy_allow_private)
        session_id = new_id("ses")
        hooks = [
            await self._webhooks.prepare(session_id, body, "config")
            for body in data.config.webhooks or []
        ]
        config = _config_dict(data.config)
        try:
            row = await self._records.create(db, session_id, data.name, engine_name, config, hooks)
        except IntegrityError as exc:
            raise SessionExists(details={"name": data.name}) from exc
        webhooks = [with_secret(h) for h in hooks]
        if not data.auto_start:
            return SessionCreated(**to_schema(row).model_dump(), webhooks=webhooks)
        await commit(db)  # the runtime starts the session from its committed row
        try:
            async with self._runtime.lock(row.id):
                await self._runtime.start(row.id, "auto start")
        except (SessionLimitReached, OwnedElsewhere):
            # Another create took the last place meanwhile: leave no half-made session
            # (forwarded to an instance with room, the create is made there afresh).
            await self._remove(db, row.id)
            raise
        session = await self.get(row.id)
        return SessionCreated(**session.model_dump(), webhooks=webhooks)

    async def get(self, session_id: str) -> Session:
        return to_schema(await self._row(session_id))

    def get_json(self, row: SessionRow) -> bytes:
        """A resolved session as the JSON of its schema, rendered once per committed row."""
        return self._directory.view(row, "session", _render)

    async def page(self, params: PageParams, principal: Principal) -> tuple[list[Session], int]:
        only = sorted(principal.sessions) if principal.sessions is not None else None
        rows, total = self._directory.page(params, only)
        return [to_schema(row) for row in rows], total

    async def update(
        self, db: AsyncSession, session_id: str, config: SessionConfig
    ) -> SessionUpdated:
        changes = config.model_dump(by_alias=True, exclude_unset=True)
        hook_bodies = config.webhooks if "webhooks" in changes else None
        changes.pop("webhooks", None)
        if config.proxy:
            await check_proxy(config.proxy, self._proxy_allow_private)
        prepared = [
            await self._webhooks.prepare(session_id, body, "config") for body in hook_bodies or []
        ]
        given = (prepared, hook_bodies) if hook_bodies is not None else None
        async with self._runtime.lock(session_id):
            # Replacing config webhooks deletes their deliveries, which the delivery
            # worker may be recording (PostgreSQL: a deadlock, the change rolled back
            # whole): nothing was written, nor done outside the database, so it is done
            # again.
            changed, hooks = await again_if_deadlocked(
                partial(self._change_config, db, session_id, changes, given),
                event="session_update_retried",
                db=db,
                session_id=session_id,
            )
            reconnect = bool(changed & _RECONNECT_FIELDS) and self._runtime.is_running(session_id)
        session = await self.get(session_id)
        return SessionUpdated(
            **session.model_dump(),
            webhooks=[as_configured(row, shown) for row, shown in hooks or []],
            reconnect_required=reconnect,
        )

    async def _change_config(
        self,
        db: AsyncSession,
        session_id: str,
        changes: dict[str, Any],
        hooks: tuple[list[WebhookRow], list[WebhookCreate]] | None,
    ) -> tuple[set[str], list[tuple[WebhookRow, bool]] | None]:
        """Apply and commit a config change (under the session's lock); the fields whose
        value changed, and the config webhooks as they are now (when they were given)."""
        # The row first, and held: a delete committed since the route looked it up is a
        # 404 here rather than a broken foreign key for the webhooks below, and one on
        # another instance waits for this change.
        row = await SessionRepository(db).get_held(session_id, held="to change")
        if row is None:
            raise SessionNotFound(details={"session": session_id})
        webhooks = None
        if hooks is not None:
            webhooks = await self._webhooks.replace_config_webhooks(db, session_id, *hooks)
        merged = dict(row.config or {})
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        changed = {k for k in changes if (row.config or {}).get(k) != merged.get(k)}
        row.config = merged
        row.updated_at = utcnow()
        # Under the lock: a start of this session connects with the new config.
        await commit(db)
        return changed, webhooks

    async def delete(self, db: AsyncSession, session_id: str) -> None:
        async with self._runtime.lock(session_id):
            # Its queued reports are not written: its messages go with it.
            await self._runtime.logout(session_id, "deleted", keep_reports=False)
            await self._remove(db, session_id)
        await self._forget_media(session_id)

    async def _remove(self, db: AsyncSession, session_id: str) -> None:
        """Delete the session (under its lock: no start sees it half gone), then drop
        what the runtime keeps for it. Gone for the API once the first of its
        transactions commits; its rows go after, a batch per transaction, then its row
        (`sessions/removal.py`); the engine was logged out before, and stays so."""
        await self.removal.remove(db, session_id)
        await self._runtime.forget(session_id)

    async def _forget_media(self, session_id: str) -> None:
        """What the session stored (media of its messages, an engine's profile) goes
        with it. After the commit, so a delete that failed keeps its media; a failure
        here (the store unreachable, or too slow: obstore retries for minutes) is logged
        and leaves the files, and the delete is answered all the same."""
        removed = await delete_prefix(self._media, session_id, _FORGET_MEDIA_S)
        if removed is not None:
            log.info("session_media_deleted", session_id=session_id, count=removed)

    async def start(self, session_id: str) -> Session:
        async with self._runtime.lock(session_id):
            await self._runtime.start(session_id, "started by API")
        return await self.get(session_id)

    async def stop(self, session_id: str) -> Session:
        async with self._runtime.lock(session_id):
            await self._runtime.stop(session_id, "stopped by API")
        return await self.get(session_id)

    async def restart(self, session_id: str) -> Session:
        async with self._runtime.lock(session_id):
            await self._runtime.stop(session_id, "restarting")
            await self._runtime.start(session_id, "restarted by API")
        return await self.get(session_id)

    async def logout(self, session_id: str) -> Session:
        async with self._runtime.lock(session_id):
            await self._runtime.logout(session_id, "logged out by API")
        return await self.get(session_id)

    async def qr(self, session_id: str) -> QrCode:
        row = await self._row(session_id)
        if row.status != Status.QR_READY or not row.qr:
            raise QrNotAvailable(details={"status": row.status})
        return QrCode(qr=row.qr, image=qr_data_url(row.qr))

    async def qr_png(self, session_id: str) -> bytes:
        return qr_png((await self.qr(session_id)).qr)

    async def pairing_code(self, session_id: str, phone_number: str) -> str:
        row = await self._row(session_id)
        engine = self._engines.get(row.engine)
        if "pairing_code" not in engine.capabilities:
            raise NotSupported(details={"engine": row.engine, "capability": "pairing_code"})
        self._runtime.require_here(session_id)
        client = self._runtime.client(session_id)
        if client is None or not is_running(Status(row.status)):
            raise SessionNotReady("start the session first", details={"status": row.status})
        digits = normalize_phone(phone_number)
        try:
            return await client.request_pairing_code(digits)
        except PairingNotAvailable as exc:
            raise EngineError(str(exc), details={"status": row.status}) from exc

    async def _row(self, session_id: str) -> SessionRow:
        """The session as last committed (the directory's copy: no database read)."""
        row = self._directory.get(session_id)
        if row is None:
            raise SessionNotFound(details={"session": session_id})
        return row

    async def counts_by_status(self) -> dict[str, int]:
        return self._directory.counts_by_status()
