"""Rate limits as settings write them: `limits` notation, or empty for no limit."""

from __future__ import annotations

from limits import RateLimitItem, parse_many


def parse_limits(text: str) -> tuple[RateLimitItem, ...]:
    """`50/second`, `10/minute; 100/hour` (every part applies) or `` (no limit).

    Raises `ValueError` naming the notation, so a bad setting refuses the start clearly.
    """
    if not text.strip():
        return ()
    try:
        items = tuple(parse_many(text))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a rate limit: use `limits` notation such as `50/second` or "
            "`10/minute; 100/hour`, or an empty value for no limit"
        ) from None
    if any(item.amount < 1 for item in items):
        # `0/second` would refuse every request; an empty value is how to turn a limit off.
        raise ValueError(f"{text!r} allows no request at all; leave it empty for no limit")
    return items
