"""The routes' plain-text check before their expression (`PrefixedRoute`) must never rule
out a path the expression matches: the route a request reaches is the same as without it."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import Match

from openwa.api.routing import PrefixedRoute
from openwa.app import API_ROUTES

ROUTES = [route for route in API_ROUTES if isinstance(route, APIRoute)]
PARAM = re.compile(r"\{[^}]+\}")
# Path segments as clients send them: ids, words, empty, dots, encoded characters.
SEGMENT = st.text(alphabet="abcXYZ019_-.%~:{}", min_size=0, max_size=12)


def _scope(path: str, method: str, root_path: str = "") -> dict[str, object]:
    return {"type": "http", "path": path, "root_path": root_path, "method": method}


def _fill(template: str, values: list[str]) -> str:
    parts = iter(values)
    return PARAM.sub(lambda _: next(parts, "x") or "x", template)


def test_every_api_route_checks_its_plain_text_first() -> None:
    assert ROUTES
    assert all(isinstance(route, PrefixedRoute) for route in ROUTES)


@given(
    template=st.sampled_from([route.path for route in ROUTES]),
    values=st.lists(SEGMENT, max_size=4),
    suffix=st.sampled_from(["", "/", "/x", "x", "/mock/inbound"]),
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE"]),
    root_path=st.sampled_from(["", "/openwa"]),
)
def test_the_check_agrees_with_the_expression(
    template: str, values: list[str], suffix: str, method: str, root_path: str
) -> None:
    """Paths made from every route's template (so that many routes nearly match), with
    odd segments and tails: each route decides as its plain expression does."""
    path = root_path + _fill(template, values) + suffix
    scope = _scope(path, method, root_path)
    for route in ROUTES:
        expected, _ = APIRoute.matches(route, dict(scope))
        found, _ = route.matches(dict(scope))
        assert found == expected, (route.path, path)


def test_a_late_route_is_still_found_and_a_wrong_method_still_partial() -> None:
    inbound = next(r for r in ROUTES if r.path.endswith("/mock/inbound"))
    scope = _scope("/api/sessions/ses_1/mock/inbound", "POST")
    assert inbound.matches(scope)[0] is Match.FULL
    assert inbound.matches(_scope("/api/sessions/ses_1/mock/inbound", "GET"))[0] is Match.PARTIAL
    assert inbound.matches(_scope("/api/sessions/ses_1/x/inbound", "POST"))[0] is Match.NONE
