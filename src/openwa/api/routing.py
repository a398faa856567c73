"""The API's routes, built once per process and shared by every app made from them.

FastAPI (0.165) builds an included router's routes again for each app, on its first
request (about 0.4 s of dependency analysis for all of them), and matches an included
router's routes through a context layer, those of the chosen router twice. Routes
given to the app itself are built where they are declared and matched once, directly:
so every router here makes its routes whole (their operation ids included), and
`create_app` hands the app this one flat list.

The app tries its routes one by one, each with a regular expression and FastAPI's own
checks (about 1.7 µs a route): a route near the end of the list cost a request 0.12 ms
before it was found, a tenth of the CPU of an inbound message through the mock. A route
here first compares the path with its template's plain text (`PrefixedRoute`): a route
that cannot match says so in a fraction of that, and the order is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def operation_id(route: APIRoute) -> str:
    """An operation's id: its endpoint's name (clients generated from the document take
    it as their function's name)."""
    return route.name


class PrefixedRoute(APIRoute):
    """An API route that rules itself out by its path's plain text before matching.

    Its expression (`^/api/sessions/(?P<session_id>[^/]+)/mock/inbound$`) matches only
    a path that starts and ends with the template's literal ends and, as no parameter
    but a `:path` one spans a slash, has as many slashes as the template."""

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self.literal_start = path.split("{", 1)[0]
        self.literal_end = path.rsplit("}", 1)[1] if "}" in path else ""
        self.slashes = None if ":path}" in path else path.count("/")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            route_path = get_route_path(scope) if scope.get("root_path") else scope["path"]
            if not (
                route_path.startswith(self.literal_start)
                and route_path.endswith(self.literal_end)
                and (self.slashes is None or route_path.count("/") == self.slashes)
            ):
                return Match.NONE, {}
        return super().matches(scope)


def api_router(
    prefix: str = "",
    tags: Sequence[str] = (),
    *,
    ids: Callable[[APIRoute], str] = operation_id,
    **options: Any,
) -> APIRouter:
    """A router whose routes are complete as declared: path, tags and operation id."""
    return APIRouter(
        prefix=prefix,
        tags=list(tags),
        generate_unique_id_function=ids,
        route_class=PrefixedRoute,
        **options,
    )


def flat_routes(routers: Sequence[APIRouter]) -> list[BaseRoute]:
    """The routers' routes in order: tried first to last, so the hottest come first.
    No two routers share a path, so the order changes nothing else."""
    return [route for router in routers for route in router.routes]
