"""Liveness, readiness and Prometheus metrics (open routes, unless configured)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from openwa import __version__
from openwa.api.authentication import authenticate
from openwa.api.deps import ServicesDep, raw_api_key
from openwa.api.envelope import Envelope, JSONResponse, meta, ok
from openwa.api.responses import errors
from openwa.api.routing import api_router
from openwa.backlog import ScrapeReads
from openwa.errors import Unauthorized
from openwa.health import Liveness, SharedReadiness
from openwa.kit.shared_call import SharedCall

router = api_router(tags=["health"])


@router.get("/health")
async def health() -> Envelope[Liveness]:
    """200 while the process lives."""
    return ok(Liveness(version=__version__))


@router.get(
    "/health/ready",
    responses={503: {"description": "An adapter is down; the body says which"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 when every adapter is usable, 503 with the same body when one is not."""
    shared: SharedReadiness = request.app.state.readiness  # one per app (create_app)
    is_ready, checks = await shared()
    draining = bool(getattr(request.app.state, "draining", False))
    is_ready = is_ready and not draining
    body = {
        "success": is_ready,
        "data": {"status": "ready" if is_ready else "not_ready", "draining": draining, **checks},
        "meta": meta().model_dump(by_alias=True),
    }
    return JSONResponse(body, status_code=200 if is_ready else 503)


@router.get("/metrics", response_class=Response, responses=errors(Unauthorized))
async def metrics(services: ServicesDep, request: Request) -> Response:
    """Prometheus text: requests by route and status, latency, sessions by status, what
    the gateway moved and what waits to go out (docs/deployment.md, Metrics)."""
    if services.settings.metrics_require_key:
        await authenticate(request, raw_api_key(request))
    shared: SharedCall[ScrapeReads] = request.app.state.scrape_reads  # one per app
    read = await shared()
    body = services.metrics.render(
        read.sessions_by_status, services.runtime.running_count, read.backlog
    )
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
