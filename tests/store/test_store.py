"""SqlStore on SQLite and PostgreSQL: persistence, idempotency keys, compare-and-set races."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from scanpay.domain.machine import Trigger
from scanpay.domain.model import (
    ApiVersion,
    AttemptStatus,
    EventType,
    Order,
    OrderStatus,
    PaymentAttempt,
    new_attempt_id,
    new_order_id,
    new_out_trade_no,
)
from scanpay.domain.ports import AttemptUpdate, IdempotencyClaim, ReceivedNotification
from scanpay.errors import ConflictError, InvalidTransitionError, NotFoundError
from scanpay.store.sql import SqlStore
from scanpay.store.tables import events, notifications_received, orders

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def new_pair(amount: int = 100) -> tuple[Order, PaymentAttempt]:
    order = Order(new_order_id(), amount, "Tea", OrderStatus.PENDING, NOW, NOW)
    attempt = PaymentAttempt(
        id=new_attempt_id(),
        order_id=order.id,
        out_trade_no=new_out_trade_no(NOW),
        api_version=ApiVersion.V2,
        appid="wx0001",
        mchid="1900000001",
        amount=amount,
        currency="CNY",
        status=AttemptStatus.CREATING,
        created_at=NOW,
        updated_at=NOW,
    )
    return order, attempt


async def test_order_round_trip_and_created_event(store: SqlStore) -> None:
    order, attempt = new_pair()
    placed = await store.create_order(order, attempt, None)
    assert placed.created
    assert placed.order.last_seq == 1
    assert await store.get_order(order.id) == placed.order
    assert (await store.get_order(order.id)).created_at == NOW
    assert await store.find_attempt(attempt.out_trade_no) == attempt
    [event] = await store.events_after(order.id, 0)
    assert (event.seq, event.type, event.status) == (1, EventType.CREATED, OrderStatus.PENDING)
    with pytest.raises(NotFoundError):
        await store.get_order("ord_missing")
    assert await store.find_attempt("nosuchnumber") is None


async def test_activate_attempt_once(store: SqlStore) -> None:
    order, attempt = new_pair()
    await store.create_order(order, attempt, None)
    active = await store.activate_attempt(attempt.id, "weixin://wxpay/bizpayurl?pr=abc")
    assert active.status is AttemptStatus.ACTIVE
    assert active.code_url == "weixin://wxpay/bizpayurl?pr=abc"
    again = await store.activate_attempt(attempt.id, "weixin://other")
    assert again.code_url == "weixin://wxpay/bizpayurl?pr=abc"
    assert [e.type for e in await store.events_after(order.id, 0)] == [
        EventType.CREATED,
        EventType.QR_READY,
    ]


async def test_idempotency_key_replays_and_conflicts(store: SqlStore) -> None:
    order, attempt = new_pair()
    claim = IdempotencyClaim("key-1", "f" * 64)
    first = await store.create_order(order, attempt, claim)
    other_order, other_attempt = new_pair()
    replay = await store.create_order(other_order, other_attempt, claim)
    assert not replay.created
    assert replay.order.id == first.order.id
    with pytest.raises(ConflictError):
        await store.create_order(*new_pair(), IdempotencyClaim("key-1", "e" * 64))


async def test_concurrent_same_idempotency_key_makes_one_order(store: SqlStore) -> None:
    claim = IdempotencyClaim("key-race", "a" * 64)
    results = await asyncio.gather(*(store.create_order(*new_pair(), claim) for _ in range(8)))
    assert len({r.order.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(orders)).scalar_one() == 1


async def test_transition_writes_event_and_attempt_together(store: SqlStore) -> None:
    order, attempt = new_pair()
    await store.create_order(order, attempt, None)
    update = AttemptUpdate(attempt.id, AttemptStatus.PAID, "4200000001")
    applied = await store.apply_trigger(order.id, Trigger.PAYMENT_SUCCEEDED, {"x": 1}, update)
    assert applied.order.status is OrderStatus.PAID
    assert applied.event is not None
    assert applied.event.type is EventType.PAID
    assert applied.event.data["from"] == "pending"
    paid_attempt = await store.find_attempt(attempt.out_trade_no)
    assert paid_attempt is not None
    assert paid_attempt.status is AttemptStatus.PAID
    assert paid_attempt.transaction_id == "4200000001"
    again = await store.apply_trigger(order.id, Trigger.PAYMENT_SUCCEEDED, {}, update)
    assert again.event is None
    with pytest.raises(InvalidTransitionError):
        await store.apply_trigger(order.id, Trigger.CLOSE, {})
    assert [e.seq for e in await store.events_after(order.id, 0)] == [1, 2]


def test_many_concurrent_duplicate_transitions_give_one_event(store: SqlStore) -> None:
    order, attempt = new_pair()
    store.create_order_sync(order, attempt, None)
    update = AttemptUpdate(attempt.id, AttemptStatus.PAID, "4200000002")

    def pay(_: int) -> bool:
        applied = store.apply_trigger_sync(order.id, Trigger.PAYMENT_SUCCEEDED, {}, update)
        return applied.event is not None

    with ThreadPoolExecutor(max_workers=12) as pool:
        changed = list(pool.map(pay, range(40)))
    assert changed.count(True) == 1
    with store.engine.connect() as conn:
        paid_rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.order_id == order.id, events.c.type == "paid")
        ).scalar_one()
    assert paid_rows == 1
    assert store.get_order_sync(order.id).status is OrderStatus.PAID


async def test_alerts_and_received_notifications(store: SqlStore) -> None:
    order, attempt = new_pair()
    await store.create_order(order, attempt, None)
    alert = await store.record_alert(order.id, "amount_mismatch", {"reported_amount": 1})
    assert alert.status is OrderStatus.PENDING
    await store.record_alert(None, "unknown_out_trade_no", {"out_trade_no": "x" * 10})
    assert [a.data["reason"] for a in store.alerts_sync()] == [
        "amount_mismatch",
        "unknown_out_trade_no",
    ]
    await store.record_notification(
        ReceivedNotification("v2-payment", b"<xml/>", "rejected", "bad signature", None)
    )
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(notifications_received)).one()
    assert row.body == b"<xml/>"
    assert row.outcome == "rejected"
