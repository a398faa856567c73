"""The message status machine as pure functions (messages/status.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openwa.messages.status import (
    FORWARD,
    MessageStatus,
    can_cancel,
    can_fail,
    parse,
    path,
    refused,
)

S = MessageStatus
ALL = list(MessageStatus)
# What engines report, and what the sender and DELETE ask for.
TARGETS = [S.SENT, S.DELIVERED, S.READ, S.PLAYED, S.FAILED, S.CANCELLED]


@pytest.mark.parametrize(
    ("current", "target", "steps"),
    [
        (S.PENDING, S.SENT, [S.SENT]),
        (S.PENDING, S.DELIVERED, [S.SENT, S.DELIVERED]),
        (S.PENDING, S.READ, [S.SENT, S.READ]),
        (S.PENDING, S.PLAYED, [S.SENT, S.PLAYED]),
        (S.SENT, S.DELIVERED, [S.DELIVERED]),
        (S.SENT, S.READ, [S.READ]),
        (S.DELIVERED, S.READ, [S.READ]),
        (S.READ, S.PLAYED, [S.PLAYED]),
        # Backwards and repeats record nothing.
        (S.SENT, S.SENT, []),
        (S.DELIVERED, S.SENT, []),
        (S.READ, S.DELIVERED, []),
        (S.PLAYED, S.READ, []),
        (S.SENT, S.PENDING, []),
        # failed: from pending (never sent) and sent (refused), nowhere else.
        (S.PENDING, S.FAILED, [S.FAILED]),
        (S.SENT, S.FAILED, [S.FAILED]),
        (S.DELIVERED, S.FAILED, []),
        (S.READ, S.FAILED, []),
        (S.FAILED, S.FAILED, []),
        # Terminal and inbound statuses go nowhere.
        (S.FAILED, S.SENT, []),
        (S.FAILED, S.READ, []),
        (S.CANCELLED, S.SENT, []),
        (S.CANCELLED, S.DELIVERED, []),
        (S.RECEIVED, S.READ, []),
        (S.RECEIVED, S.FAILED, []),
        (S.PENDING, S.RECEIVED, []),
        # cancelled: only a pending message.
        (S.PENDING, S.CANCELLED, [S.CANCELLED]),
        (S.SENT, S.CANCELLED, []),
    ],
)
def test_path(current: S, target: S, steps: list[S]) -> None:
    assert path(current, target) == steps


def test_can_fail_and_cancel() -> None:
    assert {s for s in ALL if can_fail(s)} == {S.PENDING, S.SENT}
    assert {s for s in ALL if can_cancel(s)} == {S.PENDING}


def test_a_refusal_fails_only_what_was_sent() -> None:
    # The server took it: `sent` first if it was still pending, as any ack records it.
    assert refused(S.PENDING) == [S.SENT, S.FAILED]
    assert refused(S.SENT) == [S.FAILED]
    assert {s for s in ALL if not refused(s)} == set(ALL) - {S.PENDING, S.SENT}


def test_parse() -> None:
    assert parse("delivered") is S.DELIVERED
    assert parse("server-error") is None
    assert parse("") is None


def test_plain_strings_from_the_database_work() -> None:
    assert path(S("pending"), S("read")) == [S.SENT, S.READ]
    assert path("sent", "failed") == [S.FAILED]  # type: ignore[arg-type]


def _rank(status: S) -> int:
    return FORWARD.index(status) if status in FORWARD else len(FORWARD)


@given(st.lists(st.sampled_from(TARGETS), max_size=12))
def test_any_sequence_of_changes_gives_a_forward_only_history(targets: list[S]) -> None:
    """Whatever order acks, sends, failures and cancels arrive in, the recorded history
    only moves forward, `sent` comes before any later status, and failed or cancelled
    end it."""
    current = S.PENDING
    history: list[S] = []
    for target in targets:
        steps = path(current, target)
        history += steps
        if steps:
            current = steps[-1]
        assert path(current, target) == []  # applying it again changes nothing
    for before, after in zip([S.PENDING, *history], history, strict=False):
        if after in (S.FAILED, S.CANCELLED):
            assert can_fail(before) if after is S.FAILED else can_cancel(before)
        else:
            assert _rank(after) > _rank(before), history
            if before is S.PENDING:
                assert after is S.SENT, history
    ends = [s for s in history if s in (S.FAILED, S.CANCELLED)]
    assert not ends or ends == [history[-1]], history
    assert len(history) == len(set(history)), history
