"""The outbox on SQLite and PostgreSQL: publishing in order with ids, bodies and deliveries;
leases that keep two workers off the same delivery (``FOR UPDATE SKIP LOCKED``); an order's
later event held back while an earlier one is pending; a dead worker's lease expiring."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from scanpay.domain.model import EventType, OrderStatus
from scanpay.store.migrate import writer
from scanpay.store.outbox import Attempt, Cycle, OutboxStore, Outcome
from scanpay.store.rows import append_event
from scanpay.store.tables import orders, payment_attempts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _order(engine: sa.Engine, n: int) -> str:
    order_id = f"ord_{n:022d}"
    with writer(engine).begin() as conn:
        conn.execute(sa.insert(orders).values(
            id=order_id, amount=100 + n, currency="CNY", description="Tea", status="pending",
            last_seq=0, created_at=T0, updated_at=T0,
        ))  # fmt: skip
        conn.execute(sa.insert(payment_attempts).values(
            id=f"att_{n:022d}", order_id=order_id, out_trade_no=f"sp{n:020d}", api_version="v2",
            appid="wx1", mchid="1900", amount=100 + n, currency="CNY", status="active",
            created_at=T0, updated_at=T0,
        ))  # fmt: skip
        append_event(conn, T0, order_id, EventType.CREATED, {"amount": 100 + n})
    return order_id


def _event(engine: sa.Engine, order_id: str, kind: EventType, status: OrderStatus) -> None:
    with writer(engine).begin() as conn:
        append_event(conn, T0, order_id, kind, {"transaction_id": "42x"}, new_status=status)


def _outbox(engine: sa.Engine, clock: Clock) -> OutboxStore:
    async def run(fn: Any, *args: Any) -> Any:
        return fn(*args)

    return OutboxStore(engine, run, clock)


def _ok(clock: Clock) -> Attempt:
    return Attempt(clock.now, 200, 3, "ok", None)


def test_publish_claim_order_and_leases(engine: sa.Engine) -> None:
    clock = Clock()
    outbox = _outbox(engine, clock)
    outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
    only_paid = outbox.create_endpoint_sync("http://shop.example/paid", "whsec_y", ["order.paid"])
    first, second = _order(engine, 1), _order(engine, 2)
    _event(engine, first, EventType.PAID, OrderStatus.PAID)
    _event(engine, second, EventType.PAID, OrderStatus.PAID)
    _event(engine, first, EventType.REFUNDED, OrderStatus.REFUNDED)
    assert outbox.publish_sync() == 5  # two created (internal) + three shop-facing
    assert outbox.publish_sync() == 0
    listed = outbox.list_events_sync(0, None, 10)
    assert [(e.type.value, e.order_id) for e in listed] == [
        ("order.paid", first), ("order.paid", second), ("order.refunded", first)
    ]  # fmt: skip
    assert [e.position for e in listed] == sorted(e.position for e in listed)
    body = json.loads(listed[0].body)
    assert body["id"] == listed[0].id
    assert body["data"]["out_trade_no"] == f"sp{1:020d}"
    assert body["data"]["transaction_id"] == "42x"
    # deliveries: settings endpoint 3, the order.paid-only endpoint 2
    assert len(outbox.deliveries_sync()) == 5

    # two workers at once never take the same delivery; the first order's refund waits
    taken: dict[str, list[int]] = {}

    def claim(name: str) -> None:
        taken[name] = [d.delivery_id for d in outbox.claim_sync(name, 30, 10)]

    threads = [threading.Thread(target=claim, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(taken["a"]) & set(taken["b"])
    claimed = {d: w for w, ids in taken.items() for d in ids}
    assert len(claimed) == 4  # the refund of the first order is held back
    rows = {d[0]: d for d in outbox.deliveries_sync()}
    refund_event = listed[2].id
    assert rows[refund_event][2] == "pending"

    # the worker holding the first order's paid delivery (settings endpoint) dies; its
    # lease expires and another worker takes it; the dead one's late record is ignored
    clock.now += timedelta(seconds=31)
    again = outbox.claim_sync("c", 30, 10)
    assert len(again) == 4
    first_paid = next(d for d in again if d.public_id == listed[0].id
                      and d.endpoint_id == "we_settings")  # fmt: skip
    dead = next(w for w, ids in taken.items() if first_paid.delivery_id in ids)
    assert not outbox.record_sync(first_paid, dead, _ok(clock), None, delivered=True)
    for due in again:
        assert outbox.record_sync(due, "c", _ok(clock), None, delivered=True)
    # now the refund event may go
    [refund] = outbox.claim_sync("c", 30, 10)
    assert (refund.public_id, refund.endpoint_id) == (refund_event, "we_settings")
    assert only_paid.id not in {d.endpoint_id for d in again if d.public_id == refund_event}


def test_a_failing_order_does_not_hold_back_others(engine: sa.Engine) -> None:
    clock = Clock()
    outbox = _outbox(engine, clock)
    outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
    first, second = _order(engine, 1), _order(engine, 2)
    _event(engine, first, EventType.PAID, OrderStatus.PAID)
    outbox.publish_sync()
    [due] = outbox.claim_sync("w", 30, 10)
    failed = Attempt(clock.now, 500, 3, "no", None)
    assert outbox.record_sync(due, "w", failed, clock.now + timedelta(hours=1), delivered=False)
    _event(engine, second, EventType.PAID, OrderStatus.PAID)
    _event(engine, first, EventType.REFUNDED, OrderStatus.REFUNDED)
    outbox.publish_sync()
    ready = outbox.claim_sync("w", 30, 10)
    # the second order goes; the first order's refund waits behind its failing payment
    assert [json.loads(d.body)["data"]["id"] for d in ready] == [second]


def test_one_pass_records_publishes_and_claims(engine: sa.Engine) -> None:
    # the worker's pass (cycle_sync): finished attempts recorded (a lost lease reported, its
    # attempt still kept), new rows published in one batch, due deliveries leased
    clock = Clock()
    outbox = _outbox(engine, clock)
    assert outbox.cycle_sync("w", 30, 10) == Cycle([], 0, [])  # idle: nothing done
    outbox.configure_settings_endpoint_sync("http://shop.example/hook", "whsec_x", None)
    orders_ = [_order(engine, n) for n in range(1, 4)]
    for order_id in orders_:
        _event(engine, order_id, EventType.PAID, OrderStatus.PAID)
    cycle = outbox.cycle_sync("w", 30, 1)
    [first] = cycle.claimed
    assert (cycle.kept, cycle.published) == ([], 6)  # three created (internal), three paid
    listed = outbox.list_events_sync(0, None, 10)
    assert [e.position for e in listed] == sorted({e.position for e in listed})
    assert [json.loads(e.body)["data"]["out_trade_no"] for e in listed] == [
        f"sp{n:020d}" for n in range(1, 4)
    ]  # fmt: skip
    clock.now += timedelta(seconds=31)  # the lease runs out: "v" takes the first delivery
    [retaken] = outbox.claim_sync("v", 30, 1)
    assert retaken.delivery_id == first.delivery_id
    [second] = outbox.cycle_sync("w", 30, 1).claimed
    late = Outcome(first, _ok(clock), None, True)
    failed = Outcome(second, Attempt(clock.now, 503, 5, "busy", None),
                     clock.now + timedelta(minutes=5), False)  # fmt: skip
    _event(engine, orders_[0], EventType.REFUNDED, OrderStatus.REFUNDED)
    cycle = outbox.cycle_sync("w", 30, 10, [late, failed], changed=True)
    assert (cycle.kept, cycle.published) == ([False, True], 1)
    assert [d.public_id for d in cycle.claimed] == [listed[2].id]  # the refund waits for "v"
    state = {d[0]: d[2:] for d in outbox.deliveries_sync()}
    assert state[first.public_id] == ("pending", 0)  # "v" holds it
    assert state[second.public_id] == ("pending", 1)  # again in five minutes
    [delivery] = outbox.event_sync(first.public_id)[1]
    assert [a.status_code for a in delivery.history] == [200]  # the late attempt is kept
    done = outbox.cycle_sync("v", 30, 10, [Outcome(retaken, _ok(clock), None, True)])
    assert done.kept == [True]
    assert [json.loads(d.body)["type"] for d in done.claimed] == ["order.refunded"]
