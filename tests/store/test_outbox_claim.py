"""The claim in two steps (due rows, then their orders' first pending events): rows waiting
for an earlier event of their order never crowd out a delivery that may go, however many
come first (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from scanpay.domain.model import EventType, OrderStatus
from scanpay.store.outbox import SETTINGS_ENDPOINT, Attempt, EndpointRoom
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


def test_an_endpoint_at_its_limit_is_left_out_and_the_others_trimmed(engine: sa.Engine) -> None:
    """EndpointRoom: an endpoint with ``limit`` deliveries in flight gets none, even when its
    rows come first in the due order; another gets at most its room."""
    clock = Clock()
    outbox = _outbox(engine, clock)
    outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
    slow = SETTINGS_ENDPOINT
    paid = [_order(engine, n) for n in range(6)]
    for order_id in paid[:3]:  # the slow endpoint's rows come first in the due order
        _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
    outbox.publish_sync()
    other = outbox.create_endpoint_sync("http://other.example/hook", "whsec_y", None).id
    clock.now += timedelta(seconds=1)
    for order_id in paid[3:]:
        _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
    outbox.publish_sync()  # the slow endpoint has 6 rows (3 due a second earlier), the other 3
    full = EndpointRoom(2, {slow: 2})
    got = outbox.claim_sync("w", 30, 2, full)
    assert [d.endpoint_id for d in got] == [other, other]
    room = EndpointRoom(2, {other: 1})  # one more to the other; the slow one's first two
    got = outbox.claim_sync("w", 30, 10, room)
    assert sorted(d.endpoint_id for d in got) == sorted([other, slow, slow])
    assert [d.endpoint_id for d in outbox.claim_sync("w", 30, 10)] == [slow] * 4  # no limit
