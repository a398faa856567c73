"""The engines this instance can run sessions on, and what each can do."""

from __future__ import annotations

from openwa.api.deps import PrincipalDep, ServicesDep
from openwa.api.envelope import Envelope, ok
from openwa.api.routing import api_router
from openwa.engines.schemas import EngineInfo, describe_engines

router = api_router("/api/engines", ["engines"])


@router.get("")
async def list_engines(_: PrincipalDep, services: ServicesDep) -> Envelope[list[EngineInfo]]:
    """Every engine with its capabilities (the same set that answers 501 `NOT_SUPPORTED`
    on a session of that engine), whether this instance can run it now and, if not,
    why (Node.js or chromium missing), and its own session cap where it has one."""
    return ok(await describe_engines(services.engines))
