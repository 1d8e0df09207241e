"""Webhooks in the console (issues 11 and 12): each order's webhook deliveries in its
timeline, a "re-send webhooks" action (support and above) and disabled endpoints in the
alerts inbox.

Plugged in through the console's extension points (:mod:`.state`): a timeline source, an
order action and an attention source; the action's POST route is on this module's router,
guarded like the console's own (session, CSRF token, role, audit log), and re-sends through
the events API's logic (:meth:`~scanpay.store.outbox.OutboxStore.resend_sync`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime
from typing import Final
from urllib.parse import quote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from scanpay.domain.events import shop_type
from scanpay.domain.model import EventType
from scanpay.domain.operators import Action
from scanpay.errors import ConflictError, NotFoundError, ScanpayError, ValidationError
from scanpay.store.crosslink_queries import CrosslinkQueries, OrderDelivery
from scanpay.store.outbox import CANCELLED, FAILED, PENDING
from scanpay.web.console.actions import audit, authorised
from scanpay.web.console.render import see_other
from scanpay.web.console.routes import console_state, guarded
from scanpay.web.console.state import (
    AttentionItem,
    AttentionSource,
    OrderAction,
    TimelineEntry,
    TimelineSource,
)
from scanpay.webhooks.runtime import WebhookRuntime

RESEND_PATH: Final = "/console/orders/{order_id}/resend-webhooks"
EVENT_ID: Final = re.compile(r"evt_[A-Za-z0-9_-]{22}")
router = APIRouter(prefix="/console", include_in_schema=False)


def _outcome(delivery: OrderDelivery, status_code: int | None, last: bool) -> str:
    """What one attempt came to (a msgid of the console catalogue)."""
    if status_code is not None and 200 <= status_code < 300:
        return "webhook_accepted"
    if last and delivery.status == FAILED:
        return "webhook_gave_up"
    if last and delivery.status == CANCELLED:
        return "webhook_cancelled"
    return "webhook_refused" if status_code is not None else "webhook_no_answer"


def delivery_entries(
    delivery: OrderDelivery, when: Callable[[datetime | None], str]
) -> list[TimelineEntry]:
    """Timeline lines of one delivery: one per attempt, or one saying it waits."""
    kind = shop_type(EventType(delivery.event_type))
    title = kind.value if kind is not None else delivery.event_type
    base = {"event": delivery.event_public_id, "endpoint": delivery.endpoint}
    waiting = delivery.status == PENDING and delivery.next_attempt_at is not None
    if not delivery.attempts:
        outcome = "webhook_cancelled" if delivery.status == CANCELLED else "webhook_waiting"
        detail = base | {"outcome": outcome}
        if waiting:
            detail["next_attempt"] = when(delivery.next_attempt_at)
        return [TimelineEntry(delivery.created_at, "webhook", title, detail)]
    entries = []
    for number, attempt in enumerate(delivery.attempts, 1):
        last = number == len(delivery.attempts)
        detail = base | {
            "attempt_no": str(number),
            "status_code": "" if attempt.status_code is None else str(attempt.status_code),
            "latency": f"{attempt.latency_ms} ms",
            "outcome": _outcome(delivery, attempt.status_code, last),
            "error": attempt.error or "",
        }
        if last and waiting:
            detail["next_attempt"] = when(delivery.next_attempt_at)
        entries.append(TimelineEntry(attempt.attempted_at, "webhook", title, detail))
    return entries


def timeline_source(
    queries: CrosslinkQueries, when: Callable[[datetime | None], str]
) -> TimelineSource:
    async def deliveries(order_id: str) -> list[TimelineEntry]:
        found = await asyncio.to_thread(queries.order_deliveries, order_id)
        return [entry for delivery in found for entry in delivery_entries(delivery, when)]

    return deliveries


def attention_source(queries: CrosslinkQueries) -> AttentionSource:
    async def disabled(_now: datetime) -> list[AttentionItem]:
        found = await asyncio.to_thread(queries.disabled_endpoints)
        return [
            AttentionItem(e.disabled_at, "webhook_endpoint_disabled", f"{e.endpoint} ({e.reason})")
            for e in found
        ]

    return disabled


RESEND_ACTION: Final = OrderAction(
    label="Re-send webhooks", path=RESEND_PATH, needs=Action.RESEND_WEBHOOK
)


@router.post("/orders/{order_id}/resend-webhooks")
@guarded
async def resend_webhooks(request: Request) -> Response:
    """Queue the order's events (or the one named by the form's ``event``) again for every
    enabled endpoint that wants them, from the start of the retry schedule."""
    state = console_state(request)
    order_id: str = request.path_params["order_id"]
    if len(order_id) > 40:
        raise NotFoundError("no such order")
    session, form = await authorised(request, Action.RESEND_WEBHOOK, order_id)
    queries: CrosslinkQueries = request.app.state.console_crosslinks
    runtime: WebhookRuntime = request.app.state.webhooks
    if await state.db(state.queries.story, order_id) is None:
        raise NotFoundError("no such order")
    ids = await state.db(queries.order_event_ids, order_id)
    wanted = form.get("event", "").strip()
    if wanted:
        if not EVENT_ID.fullmatch(wanted) or wanted not in ids:
            await audit(state, session, Action.RESEND_WEBHOOK, order_id, "refused",
                        {"why": "not this order's event"})  # fmt: skip
            raise ValidationError("event: not one of this order's events")
        ids = [wanted]
    if not ids:
        await audit(state, session, Action.RESEND_WEBHOOK, order_id, "refused",
                    {"why": "no events"})  # fmt: skip
        raise ConflictError("the order has no events to send yet")
    queued = 0
    try:
        for public_id in ids:
            queued += await runtime.outbox.call(runtime.outbox.resend_sync, public_id)
    except ScanpayError as exc:
        await audit(state, session, Action.RESEND_WEBHOOK, order_id, "failed",
                    {"error": exc.code})  # fmt: skip
        raise
    detail = {"events": len(ids), "queued": queued} | ({"event": wanted} if wanted else {})
    if queued == 0:
        await audit(state, session, Action.RESEND_WEBHOOK, order_id, "failed", detail)
        raise ConflictError("no enabled webhook endpoint takes these events")
    runtime.wake()
    await audit(state, session, Action.RESEND_WEBHOOK, order_id, "ok", detail)
    return see_other(f"/console/orders/{quote(order_id)}?done=resend_webhook")
