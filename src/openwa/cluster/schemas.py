"""The cluster as `GET /api/cluster` shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.cluster import leases
from openwa.cluster.ownership import Ownership
from openwa.kit.clock import utcnow

_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class OwnedSession(BaseModel):
    model_config = _CAMEL

    id: str = Field(description="The session's id")
    epoch: int = Field(description="Its lease epoch: bumped each time another instance takes it")
    expires_at: datetime = Field(description="When the lease runs out unless renewed")


class InstanceInfo(BaseModel):
    model_config = _CAMEL

    id: str = Field(description="INSTANCE_ID")
    url: str = Field(description="INSTANCE_URL: where the others forward live calls")
    started_at: datetime
    last_seen: datetime = Field(description="Its last heartbeat")
    live: bool = Field(description="Whether its process holds its membership lock")
    draining: bool = Field(description="Shutting down: it takes no more sessions")
    this: bool = Field(description="Whether this instance answered")
    max_sessions: int
    running: int = Field(description="Sessions it ran at its last heartbeat")
    sessions: list[OwnedSession] = Field(description="Sessions whose lease it holds")


class ClusterInfo(BaseModel):
    model_config = _CAMEL

    clustered: bool = Field(description="Whether CLUSTER_SECRET joins several instances")
    lease_seconds: float = Field(description="SESSION_LEASE_S")
    instances: list[InstanceInfo]
    unowned: list[str] = Field(
        description="Sessions that should run but whose lease is free (being taken over)"
    )


async def describe_cluster(db: AsyncSession, ownership: Ownership, lease_s: float) -> ClusterInfo:
    """Read fresh from the database (not the last scan), with liveness from that scan."""
    now = utcnow()
    members = await leases.instances(db)
    held: dict[str, list[OwnedSession]] = {}
    owned: set[str] = set()
    dead = ownership.view.dead
    for lease in await leases.leases(db):
        if lease.expires_at >= now and lease.owner not in dead:
            owned.add(lease.session_id)
            held.setdefault(lease.owner, []).append(
                OwnedSession(id=lease.session_id, epoch=lease.epoch, expires_at=lease.expires_at)
            )
    instances = [
        InstanceInfo(
            id=m.id,
            url=m.url,
            started_at=m.started_at,
            last_seen=m.last_seen,
            live=m.id not in dead,
            draining=m.draining,
            this=m.id == ownership.instance_id,
            max_sessions=m.max_sessions,
            running=m.running,
            sessions=sorted(held.get(m.id, []), key=lambda s: s.id),
        )
        for m in members
    ]
    unowned = sorted(set(await leases.wanted(db)) - owned)
    return ClusterInfo(
        clustered=ownership.clustered, lease_seconds=lease_s, instances=instances, unowned=unowned
    )
