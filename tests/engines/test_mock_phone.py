"""A mock account's number is never in the range the mock network says is not on
WhatsApp (found by benchmarks/cluster.py: one session of twelve got 15550000078, and
every send to it failed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openwa.engines.mock import engine


def test_a_number_in_the_unknown_range_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    digits: Iterator[str] = iter("0000078" + "1234567")
    monkeypatch.setattr(engine.secrets, "choice", lambda _alphabet: next(digits))
    assert engine._random_phone() == "15551234567"
