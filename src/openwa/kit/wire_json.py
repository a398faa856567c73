"""JSON for the wire (API answers, webhook bodies, the WebSocket, SSE), made whatever
the data holds.

Engines report what WhatsApp and their libraries give, and a JavaScript string may hold
half an emoji (a lone UTF-16 surrogate), which the database keeps (`db/engine.py`) but
orjson refuses to write. Rendering an event must not fail for it: a webhook delivery
that cannot be rendered would be tried again and again and hold up every later one.
Such text goes out with the half character as U+FFFD, and a surrogate pair that
arrived split is put back together. The database's JSON columns are written and read
the same way (`db/engine.py`), so what an API answer is made of is well-formed too.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        pass
    value = well_formed(value)
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        # What is left (an integer beyond 64 bits, very deep nesting): the standard
        # library writes it, in ASCII.
        return json.dumps(value, default=str).encode()


def loads(text: str | bytes) -> Any:
    """orjson first; what it refuses (a `\\ud83d` escape of half an emoji, as Node and
    the standard library write it) is read by the standard library, made well-formed.
    Raises ValueError for what is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return well_formed(json.loads(text))


def well_formed(value: Any) -> Any:
    """`value` with every string in it well-formed Unicode (lone surrogates as U+FFFD,
    split pairs joined); other values as they are."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {well_formed(k): well_formed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [well_formed(item) for item in value]
    return value
