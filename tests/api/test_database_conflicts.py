"""A call the database gives up on in a conflict with other work of the moment.

SQLite busy past its timeout (or a deadlock PostgreSQL broke by rolling the call's
transaction back, tests/webhooks/test_deadlocks.py) means the call wrote nothing: it is
answered 503 NOT_READY with `Retry-After`, to be sent again as it was. Unless the call
had committed a part first: then "nothing was written" would be false, and a retry
would find the part there; that is a 500 like any other failure.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from openwa.api.errors import unexpected_outcome
from openwa.db.engine import conflict_detail
from tests.fixtures.app import Api


def _busy(tmp_path: Path) -> OperationalError:
    """A real "database is locked": a second writer on a file another one holds."""
    engine = create_engine(f"sqlite:///{tmp_path / 'busy.db'}", connect_args={"timeout": 0})
    try:
        with engine.connect() as holder, engine.connect() as other:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError) as refused:
                other.exec_driver_sql("BEGIN IMMEDIATE")
            holder.exec_driver_sql("ROLLBACK")
    finally:
        engine.dispose()
    return refused.value


def test_sqlite_busy_is_told_by_its_error_code(tmp_path: Path) -> None:
    assert unexpected_outcome(_busy(tmp_path)) == (503, "NOT_READY")
    assert unexpected_outcome(RuntimeError("anything else")) == (500, "INTERNAL_ERROR")
    assert conflict_detail(_busy(tmp_path)) == {"sqlite_code": "SQLITE_BUSY"}
    assert conflict_detail(RuntimeError("anything else")) == {}


async def test_a_call_that_wrote_nothing_is_answered_503_to_try_again(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = _busy(tmp_path)

    async def refused(*_args: Any, **_kwargs: Any) -> None:
        raise busy

    monkeypatch.setattr(api.services.webhooks, "create", refused)
    session = await api.create_session("conflicts", engine="mock")
    with capture_logs() as logs:
        response = await api.request(
            "POST", f"/api/sessions/{session['id']}/webhooks", json={"url": "https://example.com/h"}
        )
    assert [e.get("sqlite_code") for e in logs if e["event"] == "database_conflict"] == [
        "SQLITE_BUSY"  # what the database said is in the log
    ]
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "NOT_READY"
    assert response.headers["Retry-After"] == "1"


async def test_a_call_that_committed_a_part_first_is_a_500(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create commits the session, then starts it: a start that fails on a conflict
    leaves the session there, so the answer may not invite the same create again."""
    busy = _busy(tmp_path)

    async def refused(*_args: Any, **_kwargs: Any) -> None:
        raise busy

    monkeypatch.setattr(api.services.runtime, "start", refused)
    response = await api.request("POST", "/api/sessions", json={"name": "half", "engine": "mock"})
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    listed = (await api.request("GET", "/api/sessions")).json()["data"]
    assert [s["name"] for s in listed] == ["half"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), 503),  # PostgreSQL restarting
        (ConnectionResetError(104, "Connection reset by peer"), 503),
        (TimeoutError(), 503),  # a statement past DATABASE_COMMAND_TIMEOUT_S
        (OSError(errno.EHOSTUNREACH, "No route to host"), 503),
        (OSError("Multiple exceptions: [Errno 111] ..., [Errno 111] ..."), 503),  # every address
        (OSError(28, "No space left on device"), 500),  # no reason to try again
        (OSError(5, "Input/output error"), 500),
        (PermissionError(13, "Permission denied"), 500),
        (OSError("Input/output error (os error 5)"), 500),  # obstore's disk errors: no errno
    ],
)
def test_only_a_failure_of_the_moment_is_a_503(error: BaseException, status: int) -> None:
    assert unexpected_outcome(error)[0] == status
