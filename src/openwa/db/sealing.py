"""Which stored values are encrypted at rest, and the ORM hooks that do it unseen.

With `ENCRYPTION_KEY` set, the columns listed in `SEALED` hold `enc:v1:` tokens
(`openwa.kit.cipher`) in the database and clear values on the ORM objects: a flush
encrypts what it writes, a load decrypts what it reads. Services and repositories never
see a token. Each value is bound to its table, column and row (the token's associated
data), so a token copied into another row does not decrypt.

The hooks live on the session class of one app's factory (`install`), so several apps in
one process (tests) each use their own key. Core statements bypass them: the start-up
pass and the rotation in `openwa.db.encryption` read and write tokens that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson
from sqlalchemy import Table, event, inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import QueryContext, Session, UOWTransaction
from sqlalchemy.orm.attributes import set_committed_value

from openwa.db.base import Base
from openwa.db.engine import session_class
from openwa.db.models import EngineAuthRow, SessionRow, WebhookRow
from openwa.kit.cipher import Cipher, is_token

_SEALER = "openwa.sealer"
_RESTORE = "openwa.sealed_restore"
# Decrypted values kept per token: a delivery reads its webhook's secret and headers
# each time, and a token is never reused for another value (fresh nonce per write).
_CACHE_MAX = 4096
# Only small values are kept (secrets, headers, a proxy URL). An engine's auth state is
# large (a Baileys account's keys: 100 KB to MBs) and gets a new token on every save,
# each save reading the row first: kept, 4096 of them held gigabytes before the clear.
_CACHED_VALUE_MAX = 2048


@dataclass(frozen=True)
class SealedField:
    """One stored value kept encrypted: a text column, a JSON column (the whole value
    becomes one token, kept as a JSON string) or one member of a JSON object column."""

    model: type[Base]
    column: str
    kind: str  # "text", "json" or "member"
    member: str | None = None

    @property
    def sql_table(self) -> Table:
        return cast(Table, self.model.__table__)

    @property
    def table(self) -> str:
        return str(self.sql_table.name)

    @property
    def key_column(self) -> str:
        return str(inspect(self.model).primary_key[0].key)

    def context(self, row_id: object) -> str:
        member = f".{self.member}" if self.member else ""
        return f"openwa:{self.table}.{self.column}{member}:{row_id}"

    def is_clear(self, stored: Any) -> bool:
        """Whether a stored value still has something to encrypt."""
        if stored is None:
            return False
        if self.kind == "member":
            value = stored.get(self.member) if isinstance(stored, dict) else None
            return value is not None and not is_token(value)
        return not is_token(stored)

    def tokens(self, stored: Any) -> list[str]:
        value = stored.get(self.member) if self.kind == "member" and stored else stored
        return [value] if is_token(value) else []


SEALED: tuple[SealedField, ...] = (
    SealedField(WebhookRow, "secret", "text"),
    SealedField(WebhookRow, "previous_secret", "text"),
    SealedField(WebhookRow, "headers", "json"),
    SealedField(SessionRow, "config", "member", member="proxy"),
    SealedField(EngineAuthRow, "data", "json"),
)
_BY_MODEL: dict[type[Base], list[SealedField]] = {}
for _field in SEALED:
    _BY_MODEL.setdefault(_field.model, []).append(_field)


class Sealer:
    """Seals and opens the values of `SEALED` with one cipher."""

    def __init__(self, cipher: Cipher) -> None:
        self.cipher = cipher
        self._opened: dict[str, bytes] = {}

    def seal(self, field: SealedField, row_id: object, value: Any) -> Any:
        """The stored form of `value` (the clear value as the ORM object holds it)."""
        if value is None:
            return None
        context = field.context(row_id)
        if field.kind == "text":
            return self.cipher.encrypt(str(value).encode(), context)
        if field.kind == "json":
            return self.cipher.encrypt(orjson.dumps(value), context)
        member = value.get(field.member)
        if member is None or is_token(member):
            return value
        return {**value, field.member: self.cipher.encrypt(str(member).encode(), context)}

    def open(self, field: SealedField, row_id: object, stored: Any) -> Any:
        """The clear value of a stored one; a value still in clear is returned as is."""
        if field.kind == "member":
            member = stored.get(field.member) if isinstance(stored, dict) else None
            if not isinstance(member, str) or not is_token(member):
                return stored
            return {**stored, field.member: self._decrypt(member, field, row_id).decode()}
        if not is_token(stored):
            return stored
        plain = self._decrypt(stored, field, row_id)
        return plain.decode() if field.kind == "text" else orjson.loads(plain)

    def _decrypt(self, token: str, field: SealedField, row_id: object) -> bytes:
        plain = self._opened.get(token)
        if plain is None:
            plain = self.cipher.decrypt(token, field.context(row_id))
            if len(plain) > _CACHED_VALUE_MAX:
                return plain
            if len(self._opened) >= _CACHE_MAX:
                self._opened.clear()
            self._opened[token] = plain
        return plain


def install(factory: async_sessionmaker[AsyncSession], sealer: Sealer) -> None:
    """Encrypt on flush and decrypt on load in every session `factory` makes."""
    factory.kw.setdefault("info", {})[_SEALER] = sealer
    cls = session_class(factory)
    event.listen(cls, "before_flush", _seal_before_flush)
    # First among the after-flush listeners: the session directory copies rows there.
    event.listen(cls, "after_flush", _restore_after_flush, insert=True)
    event.listen(cls, "after_rollback", _restore_after_rollback)


def _open_row(target: Base, session: Session | None, attrs: Any = None) -> None:
    sealer = session.info.get(_SEALER) if session is not None else None
    fields = _BY_MODEL.get(type(target))
    if sealer is None or not fields:
        return
    state = inspect(target)
    for field in fields:
        if field.column not in state.dict or (attrs is not None and field.column not in attrs):
            continue
        row_id = state.dict.get(field.key_column)
        stored = state.dict[field.column]
        set_committed_value(target, field.column, sealer.open(field, row_id, stored))


def _on_load(target: Base, context: QueryContext) -> None:
    _open_row(target, context.session)


def _on_refresh(target: Base, context: QueryContext, attrs: Any) -> None:
    _open_row(target, context.session, attrs)


for _model in _BY_MODEL:
    event.listen(_model, "load", _on_load)
    event.listen(_model, "refresh", _on_refresh)


def _seal_before_flush(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    sealer: Sealer | None = session.info.get(_SEALER)
    if sealer is None:
        return
    restore: list[tuple[Base, str, Any]] = []
    new = session.new
    for target in (*new, *session.dirty):
        fields = _BY_MODEL.get(type(target))
        if not fields:
            continue
        state = inspect(target)
        for field in fields:
            if target not in new and not state.attrs[field.column].history.has_changes():
                continue
            clear = state.dict.get(field.column)
            if clear is None:
                continue
            row_id = state.dict.get(field.key_column)
            setattr(target, field.column, sealer.seal(field, row_id, clear))
            restore.append((target, field.column, clear))
    if restore:
        session.info[_RESTORE] = restore


def _restore_after_flush(session: Session, _flush: UOWTransaction) -> None:
    # Written encrypted; the objects go on holding the clear values.
    for target, column, clear in session.info.pop(_RESTORE, []):
        set_committed_value(target, column, clear)


def _restore_after_rollback(session: Session) -> None:
    """A flush that failed ran no after-flush: its objects hold encrypted values. Those
    the rollback leaves unsaved (new rows, which a unit of work done again adds again)
    get their clear values back, to be sealed once by the next flush; saved ones are
    expired by the rollback and read again, opened, when next used."""
    for target, column, clear in session.info.pop(_RESTORE, []):
        if not inspect(target).persistent:
            set_committed_value(target, column, clear)
