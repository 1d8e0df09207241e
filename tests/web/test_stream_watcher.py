"""Status streams see changes committed by another process: the hub's one shared database
watcher (not a read per stream) wakes them; in-process commits wake them directly."""

from __future__ import annotations

import asyncio

from scanpay.domain.machine import Trigger
from scanpay.domain.model import AttemptStatus
from scanpay.domain.ports import AttemptUpdate
from scanpay.store.migrate import make_engine
from scanpay.store.sql import SqlStore
from tests.web.conftest import Shop
from tests.web.test_events import parse_sse


async def test_streams_see_a_payment_committed_by_another_instance(shop: Shop) -> None:
    orders = [await shop.create_order(amount=100 + n) for n in range(3)]
    streams = [
        asyncio.create_task(shop.http.get(f"/api/orders/{order['id']}/events")) for order in orders
    ]
    await asyncio.sleep(0.1)
    assert not any(stream.done() for stream in streams)
    other = SqlStore(make_engine(shop.settings.database_url))  # a second service instance
    try:
        for order in orders:
            attempt = other.current_attempt_sync(order["id"])
            update = AttemptUpdate(attempt.id, AttemptStatus.PAID, "4200000000000009")
            applied = other.apply_trigger_sync(
                order["id"], Trigger.PAYMENT_SUCCEEDED, {"source": "elsewhere"}, update
            )
            assert applied.event is not None
    finally:
        other.close()
    responses = await asyncio.wait_for(asyncio.gather(*streams), timeout=15)
    for order, response in zip(orders, responses, strict=True):
        messages = parse_sse(response.text)
        assert messages[0][1]["status"] == "pending"
        assert messages[-1][1]["type"] == "paid"
        assert messages[-1][1]["order_id"] == order["id"]
    assert len(shop.context.hub) == 0


async def test_last_seqs_answers_for_existing_orders_only(shop: Shop) -> None:
    order = await shop.create_order()
    found = await shop.context.store.last_seqs([order["id"], "ord_missing"])
    assert found == {order["id"]: 2}  # created, qr_ready
