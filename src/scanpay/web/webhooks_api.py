"""The shop's events API and webhook endpoints (shop key on every route; docs/webhooks.md).

``GET /api/events?after=&type=`` lists published shop-facing events oldest first (``after``
takes a ``next_cursor`` or an event id), ``GET /api/events/{id}`` shows one with its
deliveries and their attempts, ``POST /api/events/{id}/resend`` queues it again. Endpoints:
``POST /api/webhook-endpoints`` (the secret is in this answer only), ``GET``, ``DELETE``, and
``POST /api/webhook-endpoints/{id}/rotate-secret`` (the old secret keeps signing for a grace
period). URLs are checked against private addresses at creation (422 with the reason).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from scanpay.domain.events import ShopEventType
from scanpay.errors import NotFoundError, ValidationError
from scanpay.store.outbox import Delivery, Endpoint, ShopEvent
from scanpay.web.api import ERRORS
from scanpay.web.context import require_shop_key
from scanpay.webhooks.runtime import WebhookRuntime
from scanpay.webhooks.safety import check_url
from scanpay.webhooks.signing import generate_secret

MAX_PAGE: Final = 100
EVENT_ID: Final = re.compile(r"evt_[A-Za-z0-9_-]{22}")
ENDPOINT_ID: Final = re.compile(r"we_[A-Za-z0-9_-]{22}")
CURSOR: Final = re.compile(r"[0-9]{1,18}")
MAX_ENDPOINTS: Final = 20

router = APIRouter(
    prefix="/api", tags=["events"], responses=ERRORS, dependencies=[Depends(require_shop_key)]
)


def get_webhooks(request: Request) -> WebhookRuntime:
    runtime: WebhookRuntime = request.app.state.webhooks
    return runtime


# ---- views -----------------------------------------------------------------------------


class EventView(BaseModel):
    """An event exactly as webhooks carry it."""

    id: str
    type: ShopEventType
    created: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, event: ShopEvent) -> EventView:
        body = json.loads(event.body)
        return cls(id=event.id, type=event.type, created=event.created, data=body["data"])


class EventPage(BaseModel):
    """Events oldest first. Pass ``next_cursor`` as ``after`` to continue (it is given even
    when nothing more is there yet, so a shop can keep polling from it)."""

    items: list[EventView]
    next_cursor: str
    has_more: bool


class AttemptView(BaseModel):
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response: str  # the first bytes of the answer
    error: str | None


class DeliveryView(BaseModel):
    endpoint_id: str
    status: str  # pending, delivered, failed, cancelled
    attempts: int
    next_attempt_at: datetime | None
    history: list[AttemptView]

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryView:
        return cls(
            endpoint_id=delivery.endpoint_id,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            history=[AttemptView(**a.__dict__) for a in delivery.history],
        )


class EventDetail(EventView):
    deliveries: list[DeliveryView]


class CreateEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: Annotated[StrictStr, Field(max_length=2048, examples=["https://shop.example/webhooks"])]
    event_types: list[Annotated[ShopEventType, Field(strict=False)]] | None = Field(
        default=None, min_length=1
    )


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    grace_seconds: Annotated[StrictInt, Field(ge=0, le=7 * 86400)] = 86400


class EndpointView(BaseModel):
    id: str
    url: str
    event_types: list[str] | None
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    previous_secret_valid_until: datetime | None

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointView:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            event_types=list(endpoint.event_types) if endpoint.event_types is not None else None,
            created_at=endpoint.created_at,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
            previous_secret_valid_until=endpoint.rotating_until,
        )


class EndpointWithSecret(EndpointView):
    secret: str  # shown once: store it now


class EndpointList(BaseModel):
    items: list[EndpointView]


# ---- events ----------------------------------------------------------------------------


def _check_event_id(event_id: str) -> str:
    if not EVENT_ID.fullmatch(event_id):
        raise NotFoundError("no such event")
    return event_id


def _types(value: str | None) -> list[ShopEventType] | None:
    if value is None:
        return None
    try:
        return [ShopEventType(part.strip()) for part in value.split(",") if part.strip()]
    except ValueError:
        known = ", ".join(t.value for t in ShopEventType)
        raise ValidationError(f"type must be among: {known}", code="INVALID_TYPE") from None


@router.get("/events", summary="Events oldest first, after a cursor or an event id")
async def list_events(
    request: Request,
    after: Annotated[str | None, Query(max_length=64)] = None,
    type: Annotated[str | None, Query(max_length=400)] = None,  # the API's parameter name
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> EventPage:
    outbox = get_webhooks(request).outbox
    position = 0
    if after:
        if CURSOR.fullmatch(after):
            position = int(after)
        elif EVENT_ID.fullmatch(after):
            position = await outbox.call(outbox.position_of_sync, after)
        else:
            raise ValidationError(
                "after is a next_cursor or an event id (evt_...)", code="INVALID_CURSOR"
            )
    found: list[ShopEvent] = await outbox.call(
        outbox.list_events_sync, position, _types(type), limit + 1
    )
    page = found[:limit]
    cursor = page[-1].position if page else position
    return EventPage(
        items=[EventView.of(e) for e in page], next_cursor=str(cursor), has_more=len(found) > limit
    )


@router.get("/events/{event_id}", summary="One event with its deliveries and their attempts")
async def get_event(event_id: str, request: Request) -> EventDetail:
    outbox = get_webhooks(request).outbox
    event, deliveries = await outbox.call(outbox.event_sync, _check_event_id(event_id))
    view = EventView.of(event)
    return EventDetail(**view.model_dump(), deliveries=[DeliveryView.of(d) for d in deliveries])


@router.post(
    "/events/{event_id}/resend",
    status_code=202,
    summary="Deliver the event again to every enabled endpoint that wants it",
)
async def resend_event(event_id: str, request: Request) -> EventDetail:
    runtime = get_webhooks(request)
    outbox = runtime.outbox
    await outbox.call(outbox.resend_sync, _check_event_id(event_id))
    runtime.wake()
    event, deliveries = await outbox.call(outbox.event_sync, event_id)
    view = EventView.of(event)
    return EventDetail(**view.model_dump(), deliveries=[DeliveryView.of(d) for d in deliveries])


# ---- endpoints -------------------------------------------------------------------------


def _check_endpoint_id(endpoint_id: str) -> str:
    if not ENDPOINT_ID.fullmatch(endpoint_id):
        raise NotFoundError("no such webhook endpoint")
    return endpoint_id


@router.post(
    "/webhook-endpoints",
    status_code=201,
    tags=["webhooks"],
    summary="Add a webhook endpoint; the answer holds its signing secret (shown only here)",
)
async def create_endpoint(body: CreateEndpoint, request: Request) -> EndpointWithSecret:
    runtime = get_webhooks(request)
    await check_url(body.url, allow_private=runtime.allow_private)
    outbox = runtime.outbox
    existing: list[Endpoint] = await outbox.call(outbox.endpoints_sync)
    if sum(1 for e in existing if e.source == "api") >= MAX_ENDPOINTS:
        raise ValidationError(f"at most {MAX_ENDPOINTS} endpoints", code="TOO_MANY_ENDPOINTS")
    secret = generate_secret()
    types = [t.value for t in body.event_types] if body.event_types is not None else None
    endpoint = await outbox.call(outbox.create_endpoint_sync, body.url, secret, types)
    return EndpointWithSecret(**EndpointView.of(endpoint).model_dump(), secret=secret)


@router.get("/webhook-endpoints", tags=["webhooks"], summary="The webhook endpoints")
async def list_endpoints(request: Request) -> EndpointList:
    outbox = get_webhooks(request).outbox
    found: list[Endpoint] = await outbox.call(outbox.endpoints_sync)
    return EndpointList(items=[EndpointView.of(e) for e in found])


@router.get("/webhook-endpoints/{endpoint_id}", tags=["webhooks"], summary="One endpoint")
async def get_endpoint(endpoint_id: str, request: Request) -> EndpointView:
    outbox = get_webhooks(request).outbox
    endpoint = await outbox.call(outbox.endpoint_sync, _check_endpoint_id(endpoint_id))
    return EndpointView.of(endpoint)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    status_code=204,
    tags=["webhooks"],
    summary="Remove an endpoint (what it had still to receive is cancelled)",
)
async def delete_endpoint(endpoint_id: str, request: Request) -> Response:
    outbox = get_webhooks(request).outbox
    await outbox.call(outbox.delete_endpoint_sync, _check_endpoint_id(endpoint_id))
    return Response(status_code=204)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    tags=["webhooks"],
    summary="A new secret (shown only here); the old one also signs for grace_seconds",
)
async def rotate_secret(
    endpoint_id: str, body: RotateSecret, request: Request
) -> EndpointWithSecret:
    outbox = get_webhooks(request).outbox
    secret = generate_secret()
    endpoint = await outbox.call(
        outbox.rotate_secret_sync,
        _check_endpoint_id(endpoint_id),
        secret,
        timedelta(seconds=body.grace_seconds),
    )
    return EndpointWithSecret(**EndpointView.of(endpoint).model_dump(), secret=secret)
