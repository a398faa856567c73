"""The start-up check of `ENCRYPTION_KEY`, the first encryption, and key rotation.

The `encryption_state` row holds a known text encrypted with the key in use. At start
(inside the migration lock, so instances started together take turns):

- with a key and no row: the row is written and every value of `SEALED` still in clear
  is encrypted in place, in the same transaction;
- with a key and a row: the key must open the row, and every stored token must carry
  its key id, or the start is refused; values still in clear (written by an older
  version) are encrypted;
- without a key and with a row: the start is refused, since the values cannot be read.

Rotation re-encrypts every token and the row under a new key in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openwa.db.models import EncryptionStateRow
from openwa.db.sealing import SEALED, SealedField, Sealer
from openwa.kit.cipher import Cipher, CipherError, token_kid
from openwa.kit.clock import utcnow

_VERIFIER = b"openwa encryption verifier"
_VERIFIER_CONTEXT = "openwa:encryption_state.verifier:1"


class EncryptionKeyError(Exception):
    """ENCRYPTION_KEY is missing or is not the key the database was encrypted with."""


async def _state(db: AsyncSession) -> EncryptionStateRow | None:
    result = await db.execute(select(EncryptionStateRow).where(EncryptionStateRow.id == 1))
    return result.scalar_one_or_none()


def _check_verifier(cipher: Cipher, state: EncryptionStateRow) -> None:
    try:
        ok = cipher.decrypt(state.verifier, _VERIFIER_CONTEXT) == _VERIFIER
    except CipherError:
        ok = False
    if not ok:
        raise EncryptionKeyError(
            f"ENCRYPTION_KEY (key id {cipher.kid}) is not the key this database was "
            f"encrypted with (key id {state.kid}); set the right key, or change keys with "
            "`openwa keys rotate-encryption`"
        )


async def is_under(db: AsyncSession, cipher: Cipher) -> bool:
    """Whether the database's values are encrypted with `cipher` (a rotation to it done)."""
    state = await _state(db)
    if state is None:
        return False
    try:
        _check_verifier(cipher, state)
    except EncryptionKeyError:
        return False
    return True


async def _rewrite(
    db: AsyncSession, field: SealedField, change: Callable[[object, Any], Any | None]
) -> int:
    """Apply `change(row_id, stored)` to every stored value of `field`; None leaves it."""
    table = field.sql_table
    key = table.c[field.key_column]
    column = table.c[field.column]
    rows = (await db.execute(select(key, column).where(column.is_not(None)))).all()
    changed = 0
    for row_id, stored in rows:
        new = change(row_id, stored)
        if new is not None:
            await db.execute(update(table).where(key == row_id).values({field.column: new}))
            changed += 1
    return changed


async def prepare(db: AsyncSession, cipher: Cipher | None) -> int:
    """Check the key against the database and encrypt what is still in clear.

    Returns how many values were encrypted now; raises `EncryptionKeyError` for a start
    that must be refused. The caller commits.
    """
    state = await _state(db)
    if cipher is None:
        if state is not None:
            raise EncryptionKeyError(
                f"this database holds values encrypted at rest (key id {state.kid}) and "
                "ENCRYPTION_KEY is not set; set it to the key they were encrypted with"
            )
        return 0
    if state is None:
        db.add(
            EncryptionStateRow(
                id=1,
                kid=cipher.kid,
                verifier=cipher.encrypt(_VERIFIER, _VERIFIER_CONTEXT),
                updated_at=utcnow(),
            )
        )
        await db.flush()
    else:
        _check_verifier(cipher, state)
    sealer = Sealer(cipher)
    encrypted = 0
    for field in SEALED:

        def seal_clear(row_id: object, stored: Any, field: SealedField = field) -> Any | None:
            for token in field.tokens(stored):
                if token_kid(token) != cipher.kid:
                    raise EncryptionKeyError(
                        f"{field.table}.{field.column} of {row_id} was encrypted with key id "
                        f"{token_kid(token)}, not with ENCRYPTION_KEY (key id {cipher.kid})"
                    )
            return sealer.seal(field, row_id, stored) if field.is_clear(stored) else None

        encrypted += await _rewrite(db, field, seal_clear)
    return encrypted


async def rotate(db: AsyncSession, old: Cipher, new: Cipher) -> int:
    """Re-encrypt every value and the verifier from `old` to `new`; the caller commits.

    Values still in clear are encrypted with `new` on the way. Returns how many values
    were written.
    """
    await prepare(db, old)
    state = await _state(db)
    assert state is not None  # written by prepare
    opener, sealer = Sealer(old), Sealer(new)
    written = 0
    for field in SEALED:

        def reseal(row_id: object, stored: Any, field: SealedField = field) -> Any | None:
            if not field.tokens(stored):
                return None
            return sealer.seal(field, row_id, opener.open(field, row_id, stored))

        written += await _rewrite(db, field, reseal)
    state.kid = new.kid
    state.verifier = new.encrypt(_VERIFIER, _VERIFIER_CONTEXT)
    state.updated_at = utcnow()
    await db.flush()
    return written
