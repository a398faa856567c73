"""Wire schemas of sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, Field, field_validator

from openwa.config import EngineName
from openwa.kit.names import name_problem
from openwa.kit.redact import MASK, redact_url
from openwa.kit.schema import CamelModel, StrictCamelModel
from openwa.messages.pacing import SendInterval
from openwa.sessions.status import Status
from openwa.webhooks.schemas import ConfigWebhook, WebhookCreate, WebhookWithSecret

_PROXY_SCHEMES = {"http", "https", "socks5", "socks5h"}


def _check_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_proxy(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in _PROXY_SCHEMES or not parts.hostname:
        raise ValueError("must be an http://, https:// or socks5:// URL with a host")
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return value


def mask_proxy(value: str | None) -> str | None:
    """The proxy URL with any credential masked, for every role (the contract shows proxy
    credentials to nobody after they are set): a user name alone may be a token, and a
    query parameter may be a password, so the user info and every query value go."""
    if not value:
        return value
    try:
        given = urlsplit(value)
        parts = urlsplit(redact_url(value, every_query=True))
    except ValueError:
        return MASK
    # A bare `?TOKEN` has no name to keep, and a path may be a token too (proxies have
    # no use for one): masked whole.
    bare = any("=" not in item for item in given.query.split("&")) if given.query else False
    query = MASK if bare else parts.query
    path = parts.path if parts.path in ("", "/") else f"/{MASK}"
    return urlunsplit(parts._replace(path=path, query=query))


SessionName = Annotated[str, AfterValidator(_check_name)]


class IgnoreConfig(StrictCamelModel):
    groups: bool = False
    status: bool = False
    channels: bool = False


class SessionConfig(StrictCamelModel):
    proxy: Annotated[str | None, AfterValidator(_check_proxy)] = Field(
        default=None, description="http://, https:// or socks5:// URL, credentials allowed"
    )
    metadata: dict[str, str] | None = Field(
        default=None, description="Up to 20 string pairs echoed in every event of the session"
    )
    ignore: IgnoreConfig | None = None
    mark_online: bool | None = None
    send_interval: SendInterval | None = Field(
        default=None,
        description=(
            "A random gap, drawn anew each time between `minMs` and `maxMs`, between two "
            "messages the session sends (instead of SEND_INTERVAL_MIN_MS/MAX_MS); "
            "`{minMs: 0}` sends at the engine's pace"
        ),
    )
    webhooks: list[WebhookCreate] | None = Field(
        default=None,
        max_length=10,
        description=(
            "Webhooks registered with the session (source `config`); their secrets are in "
            "the create or update response only. On PATCH the list replaces the earlier one."
        ),
    )

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > 20:
            raise ValueError("at most 20 pairs")
        for key, item in value.items():
            if not 1 <= len(key) <= 64:
                raise ValueError("keys are 1 to 64 characters")
            if len(item) > 512:
                raise ValueError("values are at most 512 characters")
        return value


class SessionCreate(StrictCamelModel):
    name: SessionName = Field(examples=["sales-team"])
    engine: EngineName | None = Field(default=None, description="Defaults to ENGINE_TYPE")
    auto_start: bool = True
    config: SessionConfig = Field(default_factory=SessionConfig)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"name": "sales-team", "engine": "mock", "config": {"metadata": {"team": "sales"}}}
            ]
        }
    }


class SessionUpdate(StrictCamelModel):
    config: SessionConfig = Field(
        description="Fields given replace the stored ones; a field set to null removes it"
    )


def _absent(value: object) -> bool:
    return value is None


class SessionConfigView(CamelModel):
    """The config as a session shows it: the fields that were set (proxy credentials
    masked); webhooks given in the config are webhooks of their own, not shown here.

    A model apart from the request's `SessionConfig`, so that the two shapes keep
    distinct names in the OpenAPI document and in clients generated from it."""

    proxy: str | None = Field(
        default=None, exclude_if=_absent, description="The proxy URL, credentials masked"
    )
    metadata: dict[str, str] | None = Field(default=None, exclude_if=_absent)
    ignore: IgnoreConfig | None = Field(default=None, exclude_if=_absent)
    mark_online: bool | None = Field(default=None, exclude_if=_absent)
    send_interval: SendInterval | None = Field(default=None, exclude_if=_absent)


class StatusChange(CamelModel):
    status: Status
    previous_status: Status | None
    reason: str | None
    at: datetime


class Session(CamelModel):
    id: str = Field(examples=["ses_01JD8X0000000000000000000A"])
    name: str
    engine: str
    status: Status
    status_history: list[StatusChange]
    phone_number: str | None
    push_name: str | None
    config: SessionConfigView
    created_at: datetime
    updated_at: datetime
    last_error: str | None


class SessionCreated(Session):
    webhooks: list[WebhookWithSecret] = Field(
        default_factory=list, description="Webhooks made from `config.webhooks`, with secrets"
    )


class SessionUpdated(Session):
    webhooks: list[ConfigWebhook] = Field(
        default_factory=list,
        description=(
            "The config webhooks when `config.webhooks` was given: those it made with their "
            "secrets, those kept as they were without"
        ),
    )
    reconnect_required: bool = Field(
        description="True when the change takes effect only after a restart of the session"
    )


class QrCode(CamelModel):
    qr: str = Field(description="The raw QR string")
    image: str = Field(description="data:image/png;base64,...")


class PairingCodeRequest(StrictCamelModel):
    phone_number: str = Field(examples=["+62 812-3456-7890"], min_length=5, max_length=32)


class PairingCode(CamelModel):
    code: str = Field(examples=["ABCD-1234"])


class MockDisconnect(StrictCamelModel):
    reason: str | None = Field(default=None, max_length=200)
