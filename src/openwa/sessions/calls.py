"""Calling a session's engine from a service: the capability and readiness checks, and
the mapping of an engine's refusals to the contract's errors, in one place."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from openwa.db.models import SessionRow
from openwa.engines.base import EngineClient, EngineRefused, SendFailed
from openwa.engines.registry import EngineRegistry
from openwa.errors import EngineError, NotSupported, SessionNotReady
from openwa.sessions.runtime import SessionRuntime

T = TypeVar("T")


def ready_client(
    runtime: SessionRuntime, engines: EngineRegistry, session: SessionRow, capability: str
) -> EngineClient:
    """The running client of a `ready` session whose engine has `capability`."""
    engine = engines.get(session.engine)
    if capability not in engine.capabilities:
        raise NotSupported(details={"engine": session.engine, "capability": capability})
    runtime.require_here(session.id)
    client = runtime.client(session.id)
    if client is None or session.id not in runtime.ready_sessions():
        raise SessionNotReady(
            "the session must be ready to ask WhatsApp", details={"status": session.status}
        )
    return client


async def engine_call(call: Awaitable[T], **details: str) -> T:
    """Await an engine call: a refusal is ENGINE_ERROR (422), a connection that went away
    since the readiness check is SESSION_NOT_READY (409)."""
    try:
        return await call
    except EngineRefused as exc:
        raise EngineError(str(exc), details={"reason": str(exc), **details}) from exc
    except SendFailed as exc:
        raise SessionNotReady(str(exc), details={"reason": str(exc)}) from exc
