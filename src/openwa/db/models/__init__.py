"""Every table, imported so that `Base.metadata` knows them all (Alembic reads it)."""

from openwa.db.models.api_key import ApiKeyRow
from openwa.db.models.engine_auth import EngineAuthRow
from openwa.db.models.session import SessionRow

__all__ = ["ApiKeyRow", "EngineAuthRow", "SessionRow"]
