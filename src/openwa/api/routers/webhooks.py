"""Webhooks per session (`/api/sessions/{id}/webhooks`) and instance-wide (`/api/webhooks`).

Both sets of routes are made by one factory; they differ only in how the caller is
authorised and which session (or none) the webhooks belong to. (No postponed
annotations here: the routes' annotations name aliases local to the factory.)
"""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path

from openwa.api.deps import (
    AdminDep,
    DbDep,
    PageDep,
    PrincipalDep,
    ReadDbDep,
    ServicesDep,
    SessionDep,
    WriterDep,
)
from openwa.api.envelope import Deleted, Envelope, PageEnvelope, ok, paged
from openwa.api.responses import errors
from openwa.api.routing import api_router
from openwa.errors import WebhookLimitReached, WebhookUrlForbidden
from openwa.kit.schema import INT64_MAX
from openwa.webhooks.schemas import (
    Delivery,
    RotatedSecret,
    RotateSecret,
    TestDelivery,
    Webhook,
    WebhookCreate,
    WebhookUpdate,
    WebhookWithSecret,
)

WebhookId = Annotated[str, Path(max_length=40, description="The webhook's id (`wh_...`)")]
DeliveryId = Annotated[int, Path(ge=1, le=INT64_MAX, description="The delivery's id")]


async def _session_reader(session: SessionDep, _: PrincipalDep) -> str | None:
    return session.id


async def _session_writer(_: WriterDep, session: SessionDep) -> str | None:
    return session.id


async def _instance(_: AdminDep) -> str | None:
    return None


def make_router(
    prefix: str,
    tag: str,
    reader: Callable[..., Awaitable[str | None]],
    writer: Callable[..., Awaitable[str | None]],
    id_prefix: str = "",
) -> APIRouter:
    # Both routers have the same endpoints: the operation ids tell them apart.
    router = api_router(prefix, [tag], ids=lambda route: f"{id_prefix}{route.name}")
    Reader = Annotated[str | None, Depends(reader)]
    Writer = Annotated[str | None, Depends(writer)]

    @router.post("", status_code=201, responses=errors(WebhookUrlForbidden, WebhookLimitReached))
    async def create_webhook(
        body: WebhookCreate, owner: Writer, services: ServicesDep, db: DbDep
    ) -> Envelope[WebhookWithSecret]:
        """Register a webhook; its `secret` is in this response only."""
        return ok(await services.webhooks.create(db, owner, body))

    @router.get("")
    async def list_webhooks(
        owner: Reader,
        principal: PrincipalDep,
        services: ServicesDep,
        db: ReadDbDep,
        page: PageDep,
    ) -> PageEnvelope[Webhook]:
        """List webhooks (without secrets; header values masked for viewer keys)."""
        items, total = await services.webhooks.page(db, owner, page)
        return paged([w.for_role(principal.can_write) for w in items], page, total)

    @router.get("/{webhook_id}")
    async def get_webhook(
        webhook_id: WebhookId,
        owner: Reader,
        principal: PrincipalDep,
        services: ServicesDep,
        db: ReadDbDep,
    ) -> Envelope[Webhook]:
        """One webhook (without its secret; header values masked for viewer keys)."""
        hook = await services.webhooks.get(db, owner, webhook_id)
        return ok(hook.for_role(principal.can_write))

    @router.patch("/{webhook_id}", responses=errors(WebhookUrlForbidden))
    async def update_webhook(
        webhook_id: WebhookId, body: WebhookUpdate, owner: Writer, services: ServicesDep, db: DbDep
    ) -> Envelope[Webhook]:
        """Change url, events, headers or active."""
        return ok(await services.webhooks.update(db, owner, webhook_id, body))

    @router.delete("/{webhook_id}")
    async def delete_webhook(
        webhook_id: WebhookId, owner: Writer, services: ServicesDep, db: DbDep
    ) -> Envelope[Deleted]:
        """Delete a webhook and its delivery log."""
        await services.webhooks.delete(db, owner, webhook_id)
        return ok(Deleted(id=webhook_id))

    @router.get("/{webhook_id}/deliveries")
    async def list_deliveries(
        webhook_id: WebhookId,
        owner: Reader,
        principal: PrincipalDep,
        services: ServicesDep,
        db: ReadDbDep,
        page: PageDep,
    ) -> PageEnvelope[Delivery]:
        """The delivery log, newest first: each attempt, status code, error, next retry
        (a redirect's location shown to viewer keys as its origin only)."""
        items, total = await services.webhooks.deliveries(db, owner, webhook_id, page)
        return paged([d.for_role(principal.can_write) for d in items], page, total)

    @router.post("/{webhook_id}/deliveries/{delivery_id}/retry")
    async def retry_delivery(
        webhook_id: WebhookId,
        delivery_id: DeliveryId,
        owner: Writer,
        services: ServicesDep,
        db: DbDep,
    ) -> Envelope[Delivery]:
        """Replay one delivery (a failed one gets a fresh set of attempts)."""
        return ok(await services.webhooks.retry(db, owner, webhook_id, delivery_id))

    @router.post("/{webhook_id}/test", status_code=202)
    async def test_webhook(
        webhook_id: WebhookId, owner: Writer, services: ServicesDep, db: DbDep
    ) -> Envelope[TestDelivery]:
        """Send a `webhook.test` event to this webhook."""
        return ok(await services.webhooks.test(db, owner, webhook_id))

    @router.post("/{webhook_id}/rotate-secret")
    async def rotate_secret(
        webhook_id: WebhookId,
        owner: Writer,
        services: ServicesDep,
        db: DbDep,
        body: Annotated[RotateSecret | None, Body()] = None,
    ) -> Envelope[RotatedSecret]:
        """A new secret; the old one stays valid for `graceSeconds` (deliveries carry both)."""
        grace = (body or RotateSecret()).grace_seconds
        return ok(await services.webhooks.rotate(db, owner, webhook_id, grace))

    return router


session_router = make_router(
    "/api/sessions/{id}/webhooks", "webhooks", _session_reader, _session_writer
)
instance_router = make_router(
    "/api/webhooks", "instance webhooks", _instance, _instance, id_prefix="instance_"
)
