"""Row <-> record conversion and the one event-appending primitive, shared by the store modules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scanpay.domain.model import (
    ApiVersion,
    AttemptStatus,
    Event,
    EventType,
    Order,
    OrderStatus,
    PaymentAttempt,
)
from scanpay.store.tables import events, orders


def order_from_row(row: sa.Row[Any]) -> Order:
    m = row._mapping
    return Order(
        id=m["id"],
        amount=m["amount"],
        description=m["description"],
        status=OrderStatus(m["status"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        currency=m["currency"],
        last_seq=m["last_seq"],
        expires_at=m["expires_at"],
        return_url=m["return_url"],
    )


def attempt_from_row(row: sa.Row[Any]) -> PaymentAttempt:
    m = row._mapping
    return PaymentAttempt(
        id=m["id"],
        order_id=m["order_id"],
        out_trade_no=m["out_trade_no"],
        api_version=ApiVersion(m["api_version"]),
        appid=m["appid"],
        mchid=m["mchid"],
        amount=m["amount"],
        currency=m["currency"],
        status=AttemptStatus(m["status"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        code_url=m["code_url"],
        transaction_id=m["transaction_id"],
        expires_at=m["expires_at"],
        next_query_at=m["next_query_at"],
        query_count=m["query_count"],
        last_query_at=m["last_query_at"],
    )


def event_from_row(row: sa.Row[Any]) -> Event:
    m = row._mapping
    return Event(
        order_id=m["order_id"],
        seq=m["seq"],
        type=EventType(m["type"]),
        status=OrderStatus(m["status"]) if m["status"] else None,
        data=dict(m["data"]),
        created_at=m["created_at"],
    )


def append_event(
    conn: sa.Connection,
    now: datetime,
    order_id: str,
    kind: EventType,
    data: Mapping[str, Any],
    *,
    new_status: OrderStatus | None = None,
    expected: OrderStatus | None = None,
) -> Event | None:
    """Bump the order's ``last_seq`` (and status, compare-and-set) and insert the event.
    Returns None when ``expected`` no longer holds."""
    values: dict[str, Any] = {"last_seq": orders.c.last_seq + 1, "updated_at": now}
    where = [orders.c.id == order_id]
    if new_status is not None:
        values["status"] = new_status.value
    if expected is not None:
        where.append(orders.c.status == expected.value)
    row = conn.execute(
        sa.update(orders)
        .where(*where)
        .values(**values)
        .returning(orders.c.last_seq, orders.c.status)
    ).first()
    if row is None:
        return None
    event = Event(order_id, row.last_seq, kind, OrderStatus(row.status), dict(data), now)
    conn.execute(
        sa.insert(events).values(
            order_id=order_id,
            seq=event.seq,
            type=kind.value,
            status=row.status,
            data=event.data,
            created_at=now,
        )
    )
    return event


def attempt_values(attempt: PaymentAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "order_id": attempt.order_id,
        "out_trade_no": attempt.out_trade_no,
        "api_version": attempt.api_version.value,
        "appid": attempt.appid,
        "mchid": attempt.mchid,
        "amount": attempt.amount,
        "currency": attempt.currency,
        "status": attempt.status.value,
        "code_url": attempt.code_url,
        "transaction_id": attempt.transaction_id,
        "created_at": attempt.created_at,
        "updated_at": attempt.updated_at,
        "expires_at": attempt.expires_at,
        "next_query_at": attempt.next_query_at,
        "query_count": attempt.query_count,
        "last_query_at": attempt.last_query_at,
    }
