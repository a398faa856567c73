"""Base for wire schemas: camelCase on the wire, snake_case in Python; and the bounds
every request input is held to before it can reach the database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
)
from pydantic import model_validator as _model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from openwa.kit.wire_json import well_formed

# What a BIGINT column (and SQLite's INTEGER) holds: a larger number reaching the
# database is an overflow there, so integers from clients are bounded to it.
# Every integer parameter declares `le=INT64_MAX` (tests/api/test_bounds.py holds every
# route to it); body integers carry their own, smaller, bounds.
INT64_MAX = 2**63 - 1


NUL_ERROR = "string_nul"
SURROGATE_ERROR = "string_lone_surrogate"


def nul_path(value: Any, path: tuple[str, ...] = ()) -> str | None:
    """Where a NUL character sits in decoded JSON (keys included), or None.

    PostgreSQL refuses NUL in text and JSONB: a value carrying one would fail at the
    database as a 500, so it is refused at the edge as a validation error instead."""
    for where, item in _strings(value, path):
        if "\x00" in item:
            return ".".join(where) or "value"
    return None


def surrogate_path(value: Any, path: tuple[str, ...] = ()) -> str | None:
    """Where a lone UTF-16 surrogate (half an emoji, `"\\ud800"` in JSON) sits in decoded
    JSON (keys included), or None. Such a string cannot be encoded as UTF-8: a session's
    `metadata` or a webhook's header holding one was stored, then every answer showing
    it failed as a 500 (the session list for every client)."""
    for where, item in _strings(value, path):
        if not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                # Said as a path the error can carry (the key may be the culprit).
                return well_formed(".".join(where)) or "value"
    return None


def _strings(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield (*path, key), key
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, str(index)))


# An ISO 8601 date first: pydantic's lax parsing also reads a number, or a string that
# is one (`"1700000000"`, `"0.5"`), as Unix time.
_ISO_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_only(value: object) -> object:
    # Strict datetimes would want a datetime object (FastAPI validates decoded JSON);
    # lax ones take a bare number as Unix time. Only an ISO 8601 string is a date here.
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE_START.match(value):
        raise ValueError("must be an ISO 8601 string with an offset")
    return value


def in_utc(value: datetime) -> datetime:
    """The time in UTC, as it is stored; one whose UTC form is outside the years 1 to
    9999 (`9999-12-31T23:59:59-12:00`, `0001-01-01T00:00:00+14:00`) is a validation
    error here, not an overflow (a 500) where it is stored or compared."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once in UTC (years 1 to 9999)") from None


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(in_utc)]
"""A date-time with an offset, in UTC (a query parameter)."""

IsoDatetime = Annotated[
    AwareDatetime, Strict(False), BeforeValidator(_iso_only), AfterValidator(in_utc)
]
"""A date-time in a request body: an ISO 8601 string with an offset, nothing else; given
back in UTC."""


class CamelModel(BaseModel):
    # A model's error text never quotes the input: a webhook's secret read from the
    # environment (`WEBHOOK_SECRET`) would be printed at start-up.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, hide_input_in_errors=True
    )


class StrictCamelModel(CamelModel):
    """For request bodies: unknown fields are an error, so typos do not pass silently;
    types are strict (`0` is not `false`, `"1.5"` not a number, `5.0` not an integer);
    no string anywhere in the body may hold a NUL.

    Strict validation of decoded JSON wants Python objects for dates and enums: declare
    date-times as `IsoDatetime` and enums with `Strict(False)`."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        hide_input_in_errors=True,
    )

    @_model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # The errors sit on the model; `where` says which field (api/errors.py appends
        # it to the location).
        where = nul_path(data)
        if where is not None:
            raise PydanticCustomError(NUL_ERROR, "holds a NUL character", {"where": where})
        where = surrogate_path(data)
        if where is not None:
            raise PydanticCustomError(
                SURROGATE_ERROR,
                "holds half a character (a lone UTF-16 surrogate)",
                {"where": where},
            )
        return data
