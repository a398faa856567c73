"""The API's routes, built once per process and shared by every app made from them.

FastAPI (0.165) builds an included router's routes again for each app, on its first
request (about 0.4 s of dependency analysis for all of them), and matches an included
router's routes through a context layer, those of the chosen router twice. Routes
given to the app itself are built where they are declared and matched once, directly:
so every router here makes its routes whole (their operation ids included), and
`create_app` hands the app this one flat list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute


def operation_id(route: APIRoute) -> str:
    """An operation's id: its endpoint's name (clients generated from the document take
    it as their function's name)."""
    return route.name


def api_router(
    prefix: str = "",
    tags: Sequence[str] = (),
    *,
    ids: Callable[[APIRoute], str] = operation_id,
    **options: Any,
) -> APIRouter:
    """A router whose routes are complete as declared: path, tags and operation id."""
    return APIRouter(prefix=prefix, tags=list(tags), generate_unique_id_function=ids, **options)


def flat_routes(routers: Sequence[APIRouter]) -> list[BaseRoute]:
    """The routers' routes in order: tried first to last, so the hottest come first.
    No two routers share a path, so the order changes nothing else."""
    return [route for router in routers for route in router.routes]
