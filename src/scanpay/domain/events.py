"""The events a shop hears about: their dotted type names and the one mapping onto them.

The store writes an ``events`` row in the same transaction as every change it records (the
outbox). Some of those rows are internal (an order was created, a QR code is ready, an
attempt was closed); the rest are what the shop receives as webhooks and lists through
``GET /api/events``. :data:`SHOP_TYPE` is that mapping, total over :class:`EventType` (a test
proves it): each internal type maps to None.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from scanpay.domain.model import EventType


class ShopEventType(StrEnum):
    ORDER_PAID = "order.paid"
    ORDER_EXPIRED = "order.expired"
    ORDER_CLOSED = "order.closed"
    ORDER_PARTIALLY_REFUNDED = "order.partially_refunded"
    ORDER_REFUNDED = "order.refunded"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    ALERT_RAISED = "alert.raised"


E = EventType
S = ShopEventType

SHOP_TYPE: Final[Mapping[EventType, ShopEventType | None]] = {
    E.CREATED: None,
    E.QR_READY: None,
    E.ATTEMPT_FAILED: None,
    E.ATTEMPT_CLOSED: None,
    E.PAID: S.ORDER_PAID,
    E.CLOSED: S.ORDER_CLOSED,
    E.EXPIRED: S.ORDER_EXPIRED,
    E.PARTIALLY_REFUNDED: S.ORDER_PARTIALLY_REFUNDED,
    E.REFUNDED: S.ORDER_REFUNDED,
    E.REFUND_SUCCEEDED: S.REFUND_SUCCEEDED,
    E.REFUND_FAILED: S.REFUND_FAILED,
    E.ALERT: S.ALERT_RAISED,
}

# The stored type names of the events a shop sees (for queries).
SHOP_FACING: Final = frozenset(kind for kind, shop in SHOP_TYPE.items() if shop is not None)
STORED_FOR: Final[Mapping[ShopEventType, EventType]] = {
    shop: kind for kind, shop in SHOP_TYPE.items() if shop is not None
}


def shop_type(kind: EventType) -> ShopEventType | None:
    """What the shop calls an event of ``kind``; None for internal events."""
    return SHOP_TYPE[kind]
