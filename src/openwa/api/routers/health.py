"""Liveness, readiness and Prometheus metrics (open routes, unless configured)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openwa import __version__
from openwa.api.deps import ServicesDep, client_address, raw_api_key
from openwa.api.envelope import Envelope, JSONResponse, meta, ok
from openwa.health import readiness

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> Envelope[dict[str, str]]:
    """200 while the process lives."""
    return ok({"status": "ok", "version": __version__})


@router.get(
    "/health/ready",
    responses={503: {"description": "An adapter is down; the body says which"}},
)
async def ready(services: ServicesDep, request: Request) -> JSONResponse:
    """200 when every adapter is usable, 503 with the same body when one is not."""
    is_ready, checks = await readiness(services)
    draining = bool(getattr(request.app.state, "draining", False))
    is_ready = is_ready and not draining
    body = {
        "success": is_ready,
        "data": {"status": "ready" if is_ready else "not_ready", "draining": draining, **checks},
        "meta": meta().model_dump(by_alias=True),
    }
    return JSONResponse(body, status_code=200 if is_ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep, request: Request) -> Response:
    """Prometheus text: requests by route and status, latency, sessions by status."""
    if services.settings.metrics_require_key:
        await services.keys.authenticate(raw_api_key(request), client_address(request))
    counts = await services.sessions.counts_by_status()
    body = services.metrics.render(counts, services.runtime.running_count)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
