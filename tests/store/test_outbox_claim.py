"""The claim in two steps (due rows, then their orders' first pending events): rows waiting
for an earlier event of their order never crowd out a delivery that may go, however many
come first (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from scanpay.domain.model import EventType, OrderStatus
from scanpay.store.outbox import Attempt
from tests.store.test_outbox import Clock, _event, _order, _outbox

WAITING = 12


def test_many_waiting_deliveries_do_not_crowd_out_one_that_may_go(engine: sa.Engine) -> None:
    clock = Clock()
    outbox = _outbox(engine, clock)
    outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
    stuck = [_order(engine, n) for n in range(WAITING)]
    for order_id in stuck:
        _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
    outbox.publish_sync()
    failed = Attempt(clock.now, 500, 3, "no", None)
    for due in outbox.claim_sync("w", 30, 100):  # every payment fails: retried in an hour
        assert outbox.record_sync(due, "w", failed, clock.now + timedelta(hours=1),
                                  delivered=False)  # fmt: skip
    for order_id in stuck:  # each order's refund, due now, waits behind its payment
        _event(engine, order_id, EventType.REFUNDED, OrderStatus.REFUNDED)
    free = _order(engine, WAITING)
    _event(engine, free, EventType.PAID, OrderStatus.PAID)  # due now too, listed last
    outbox.publish_sync()
    # 2 at a time: the first rows looked at are all waiting refunds, yet the free one goes
    ready = outbox.claim_sync("w", 30, 2)
    assert [(json.loads(d.body)["type"], json.loads(d.body)["data"]["id"]) for d in ready] == [
        ("order.paid", free)
    ]
    assert outbox.claim_sync("w", 30, 100) == []  # the refunds still wait
