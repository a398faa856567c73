"""The instances sharing this database, and which sessions each runs."""

from __future__ import annotations

from openwa.api.deps import AdminDep, ReadDbDep, ServicesDep
from openwa.api.envelope import Envelope, ok
from openwa.api.routing import api_router
from openwa.cluster.schemas import ClusterInfo, describe_cluster

router = api_router("/api/cluster", ["cluster"])


@router.get("")
async def get_cluster(_: AdminDep, services: ServicesDep, db: ReadDbDep) -> Envelope[ClusterInfo]:
    """Every instance (id, address, start, last heartbeat, whether it lives) and the
    sessions whose lease it holds, with their epochs; on a single instance, just that
    one. Admin keys only: it names the instances' internal addresses."""
    return ok(await describe_cluster(db, services.ownership, services.settings.session_lease_s))
