"""Optional fields left out rather than written as null: the contract's optional members
are absent when unknown, and protobuf constructors take no None."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def present(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that have a value."""
    return {name: value for name, value in fields.items() if value is not None}
