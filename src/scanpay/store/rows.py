"""Row <-> record conversion and the one event-appending primitive, shared by the store modules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

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


def _bump(*, status: bool, expected: bool) -> sa.Update:
    """``UPDATE orders SET last_seq=last_seq+1, updated_at=:now [, status=:new_status] WHERE
    id=:order_id [AND status=:expected] RETURNING last_seq, status``, built once: a statement
    object reused with parameters keeps SQLAlchemy's per-call work to a cache lookup."""
    values: dict[str, Any] = {
        "last_seq": orders.c.last_seq + 1,
        "updated_at": sa.bindparam("now", type_=orders.c.updated_at.type),
    }
    where = [orders.c.id == sa.bindparam("order_id")]
    if status:
        values["status"] = sa.bindparam("new_status", type_=orders.c.status.type)
    if expected:
        where.append(orders.c.status == sa.bindparam("expected"))
    return (
        sa.update(orders).where(*where).values(values).returning(orders.c.last_seq, orders.c.status)
    )


_BUMPS: Final = {(s, e): _bump(status=s, expected=e) for s in (False, True) for e in (False, True)}
_INSERT_EVENT: Final = sa.insert(events)


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
    params: dict[str, Any] = {"order_id": order_id, "now": now}
    if new_status is not None:
        params["new_status"] = new_status.value
    if expected is not None:
        params["expected"] = expected.value
    bump = _BUMPS[new_status is not None, expected is not None]
    row = conn.execute(bump, params).first()
    if row is None:
        return None
    event = Event(order_id, row.last_seq, kind, OrderStatus(row.status), dict(data), now)
    conn.execute(
        _INSERT_EVENT,
        {
            "order_id": order_id,
            "seq": event.seq,
            "type": kind.value,
            "status": row.status,
            "data": event.data,
            "created_at": now,
        },
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
