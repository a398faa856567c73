"""Wire schemas of webhooks and their delivery log."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from openwa.events.types import EVENT_NAMES
from openwa.kit.redact import MASK, origin_only, urls_origin_only
from openwa.kit.schema import CamelModel, StrictCamelModel
from openwa.webhooks.signing import secret_key

# Headers we set ourselves; a webhook's own headers may not replace them.
RESERVED_HEADERS = {
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
}


def _check_events(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("at least one event, or ['*']")
    unknown = [name for name in value if name != "*" and name not in EVENT_NAMES]
    if unknown:
        raise ValueError(f"unknown events {unknown}; known: {', '.join(EVENT_NAMES)} or *")
    return sorted(set(value))


def _check_headers(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 20:
        raise ValueError("at most 20 headers")
    for name, item in value.items():
        if not name or not all(c.isalnum() or c in "-_" for c in name) or len(name) > 64:
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by OpenWA")
        if len(item) > 1024 or any(c in item for c in "\r\n\0"):
            raise ValueError(f"invalid value for header {name!r}")
    return value


class WebhookCreate(StrictCamelModel):
    url: str = Field(min_length=8, max_length=2048, examples=["https://example.com/openwa"])
    events: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Event names, or ['*'] (the default) for all",
    )
    secret: str | None = Field(
        default=None,
        description="whsec_ + base64 of 24 to 64 bytes; generated when not given",
    )
    headers: dict[str, str] | None = Field(default=None, description="Extra request headers")
    active: bool = True

    _events = field_validator("events")(_check_events)
    _headers = field_validator("headers")(_check_headers)

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value is not None:
            secret_key(value)
        return value


class WebhookUpdate(StrictCamelModel):
    url: str | None = Field(default=None, min_length=8, max_length=2048)
    events: list[str] | None = Field(default=None, min_length=1)
    headers: dict[str, str] | None = None
    active: bool | None = None

    _events = field_validator("events")(_check_events)
    _headers = field_validator("headers")(_check_headers)


class Webhook(CamelModel):
    id: str = Field(examples=["wh_01JD8X0000000000000000000A"])
    session_id: str | None = Field(description="null for an instance-wide webhook")
    url: str
    events: list[str]
    headers: dict[str, str]
    active: bool = Field(
        description="false: nothing is delivered or queued for it. OpenWA sets it false "
        "itself when deliveries have failed for WEBHOOK_DISABLE_AFTER_DAYS (disabledReason)"
    )
    source: str = Field(description="api, env (WEBHOOK_URL) or config (session config)")
    failing_since: datetime | None = Field(
        default=None,
        description="The first failed attempt since the last successful one; null while "
        "deliveries succeed",
    )
    disabled_reason: str | None = Field(
        default=None,
        description="Why OpenWA switched it off (no successful delivery for "
        "WEBHOOK_DISABLE_AFTER_DAYS); null unless so. Setting active clears it",
    )
    created_at: datetime
    updated_at: datetime

    def for_role(self, can_write: bool) -> Webhook:
        """As a key of this role may see it. Receivers carry credentials in header values
        (`Authorization: Bearer ...`) and in URLs (user info, `?token=`, a path holding
        the token as Slack's and Discord's do), so a key that cannot change them (a
        viewer) sees header names with each value as `***`, and of the URL its scheme,
        host and port, with user info, path, query and fragment masked."""
        if can_write:
            return self
        return self.model_copy(
            update={"headers": dict.fromkeys(self.headers, MASK), "url": origin_only(self.url)}
        )


class WebhookWithSecret(Webhook):
    secret: str = Field(description="Shown only on create and rotate")


class ConfigWebhook(Webhook):
    """A config webhook as a session PATCH left it."""

    secret: str | None = Field(
        description=(
            "Shown for a webhook this change made, or whose secret the change gave; null "
            "for one kept as it was (its secret was shown when it was made)"
        )
    )


class RotateSecret(StrictCamelModel):
    grace_seconds: int = Field(
        default=86400, ge=0, le=7 * 86400, description="How long the old secret stays valid"
    )


class RotatedSecret(CamelModel):
    secret: str
    previous_secret_valid_until: datetime


class DeliveryAttempt(CamelModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    location: str | None = Field(
        default=None,
        description=(
            "The `Location` a 3xx answer pointed to (credentials masked); redirects are "
            "never followed, so a 3xx is a failed attempt"
        ),
    )


class Delivery(CamelModel):
    id: int
    webhook_id: str
    event_id: str
    event: str
    session_id: str
    status: str = Field(description="pending, succeeded or failed")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    log: list[DeliveryAttempt]

    def for_role(self, can_write: bool) -> Delivery:
        """A redirect's `location` is the receiver's URL, its token as like as not in
        the path, and an error may quote the URL: a key that cannot change the webhook
        sees their origins only."""
        if can_write:
            return self
        log = [
            a.model_copy(
                update={
                    "location": origin_only(a.location) if a.location else None,
                    "error": urls_origin_only(a.error) if a.error else a.error,
                }
            )
            for a in self.log
        ]
        last = urls_origin_only(self.last_error) if self.last_error else self.last_error
        return self.model_copy(update={"log": log, "last_error": last})


class TestDelivery(CamelModel):
    event_id: str
    delivery_id: int
