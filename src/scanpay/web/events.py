"""The status stream: Server-Sent Events of one order's public events.

The stream first sends the current state (``type: snapshot``) unless the client resumes with
``Last-Event-ID``, in which case it replays what came after. Event ids are the order's event
``seq``. The stream ends once the order is settled (anything but ``pending``). Between events
it only waits on :class:`~scanpay.web.hub.ChangeHub` (no database reads while idle).

When the instance shuts down gracefully (:meth:`ChangeHub.drain`), an open stream sends what
it has not sent yet, then ``retry: DRAIN_RETRY_MS`` and a ``: draining`` comment, and ends:
the browser's EventSource reconnects after that pause, through the load balancer, to another
instance, with ``Last-Event-ID``, and the stream resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Final

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from scanpay.domain.machine import is_settled
from scanpay.domain.model import PUBLIC_EVENTS, OrderStatus
from scanpay.web.api import ERRORS, check_order_id
from scanpay.web.context import AppContext, get_context

RETRY_MS: Final = 2000
DRAIN_RETRY_MS: Final = 250
DRAIN_MESSAGE: Final = f"retry: {DRAIN_RETRY_MS}\n: draining, reconnect\n\n".encode()

router = APIRouter(prefix="/api", tags=["orders"], responses=ERRORS)


def _message(seq: int, payload: dict[str, object]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return f"id: {seq}\ndata: {data}\n\n".encode()


def _last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or len(value.strip()) > 9:
        return None
    return int(value.strip())


async def stream_order(
    context: AppContext, order_id: str, last_event_id: int | None
) -> AsyncIterator[bytes]:
    order = await context.store.get_order(order_id)
    status: OrderStatus = order.status
    hub = context.hub
    yield f"retry: {RETRY_MS}\n\n".encode()
    if last_event_id is None:
        seq = order.last_seq
        snapshot = {"order_id": order.id, "seq": seq, "type": "snapshot", "status": status}
        yield _message(seq, snapshot)
    else:
        seq = last_event_id
    hub.subscribe(order_id, seq, context.store.last_seqs)
    try:
        while True:
            wake = hub.watch(order_id)  # before reading: no lost wake-ups
            for event in await context.store.events_after(order_id, seq):
                seq = event.seq
                if event.status is not None:
                    status = event.status
                if event.type in PUBLIC_EVENTS:
                    payload = {
                        "order_id": order_id,
                        "seq": seq,
                        "type": event.type.value,
                        "status": status,
                    }
                    yield _message(seq, payload)
            hub.seen(order_id, seq)
            if is_settled(status):
                return
            if hub.draining:
                yield DRAIN_MESSAGE
                return
            # Woken by this process's commit at once, or by the hub's shared database
            # watcher for other processes' changes; idle, only a heartbeat now and then.
            while not wake.is_set() and not hub.draining:
                try:
                    async with asyncio.timeout(context.settings.sse_heartbeat_seconds):
                        await wake.wait()
                except TimeoutError:
                    yield b": keep-alive\n\n"
    finally:
        context.hub.unsubscribe(order_id)


@router.get(
    "/orders/{order_id}/events",
    summary="Status stream (Server-Sent Events); ends when the order is settled",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def order_events(
    order_id: str,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    context = get_context(request)
    await context.store.get_order(check_order_id(order_id))  # 404 before the stream starts
    return StreamingResponse(
        stream_order(context, order_id, _last_event_id(last_event_id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
