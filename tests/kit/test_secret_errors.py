"""Errors that are printed or logged quote no secret: a bad setting at start-up, a
failed statement's parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from openwa.config import Settings
from openwa.db.engine import create_engine
from openwa.webhooks.schemas import WebhookCreate

VALID_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_bad_setting_quotes_no_value(tmp_path: Path) -> None:
    """Pydantic quoted the input: a short API_KEY, or, for a mistake elsewhere, the
    whole settings cut to its ends, the tail of a valid secret in it."""
    with pytest.raises(ValidationError) as short:
        Settings(data_dir=tmp_path, api_key="shortsecretkey")
    assert "shortsecretkey" not in str(short.value)
    with pytest.raises(ValidationError) as elsewhere:
        Settings(data_dir=tmp_path, cache_type="redis", webhook_secret=VALID_SECRET)
    assert "REDIS_URL" in str(elsewhere.value)
    assert VALID_SECRET[-12:] not in str(elsewhere.value)
    with pytest.raises(ValidationError) as plain:
        WebhookCreate(url="https://93.184.215.14/hook", secret="plain-receiver-secret")
    assert "plain-receiver-secret" not in str(plain.value)


async def test_a_failed_statement_quotes_no_parameter(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'quiet.db'}")
    try:
        with pytest.raises(DBAPIError) as failed:
            async with engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO no_such_table VALUES (:secret)"), {"secret": VALID_SECRET}
                )
    finally:
        await engine.dispose()
    assert "no_such_table" in str(failed.value)
    assert VALID_SECRET not in str(failed.value)
