"""The engines as `GET /api/engines` shows them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from openwa.engines.registry import EngineRegistry


class EngineInfo(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    name: str = Field(description="What `engine` takes on a session")
    default: bool = Field(description="Whether new sessions get it when they name none")
    available: bool = Field(description="Whether this instance can run its sessions now")
    reason: str | None = Field(default=None, description="Why not, when it cannot")
    capabilities: list[str] = Field(description="What its sessions can do; others answer 501")
    max_sessions: int | None = Field(
        default=None, description="Its own cap on running sessions (WEBJS_MAX_SESSIONS)"
    )


async def describe_engines(engines: EngineRegistry) -> list[EngineInfo]:
    found = []
    for engine in engines:
        reason = await engine.unavailable()
        found.append(
            EngineInfo(
                name=engine.name,
                default=engine.name == engines.default,
                available=reason is None,
                reason=reason,
                capabilities=sorted(engine.capabilities),
                max_sessions=engine.max_sessions,
            )
        )
    return sorted(found, key=lambda e: e.name)
