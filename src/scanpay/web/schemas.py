"""Request and response bodies of the shop API (pydantic, strict: no floats, no extras)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from scanpay.domain.model import MAX_AMOUNT, MAX_DESCRIPTION, Order, OrderStatus, PaymentAttempt
from scanpay.domain.refunds import MAX_REASON, Refund, RefundStatus


class CreateOrder(BaseModel):
    """A new order: ``amount`` in fen (whole number), a description the shopper sees."""

    model_config = ConfigDict(extra="forbid", strict=True)

    amount: Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT, examples=[1999])]
    description: Annotated[
        StrictStr, Field(min_length=1, max_length=MAX_DESCRIPTION, examples=["Green tea, 250 g"])
    ]

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class OrderView(BaseModel):
    """An order as the shop and the checkout page see it (no secrets, no internal ids)."""

    id: str
    status: OrderStatus
    amount: int
    currency: str
    description: str
    out_trade_no: str
    code_url: str | None
    checkout_url: str
    events_url: str
    created_at: datetime
    updated_at: datetime
    refunded_amount: int = 0  # fen refunded (refunds that succeeded)

    @classmethod
    def of(
        cls, order: Order, attempt: PaymentAttempt, base_url: str, refunded: int = 0
    ) -> OrderView:
        return cls(
            id=order.id,
            status=order.status,
            amount=order.amount,
            currency=order.currency,
            description=order.description,
            out_trade_no=attempt.out_trade_no,
            code_url=attempt.code_url,
            checkout_url=f"{base_url}/checkout/{order.id}",
            events_url=f"{base_url}/api/orders/{order.id}/events",
            created_at=order.created_at,
            updated_at=order.updated_at,
            refunded_amount=refunded,
        )


class OrderPage(BaseModel):
    """One page of orders, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    items: list[OrderView]
    next_cursor: str | None


class CreateRefund(BaseModel):
    """A refund of ``amount`` fen of the order's payment (at most what is left to refund)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    amount: Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT, examples=[500])]
    reason: Annotated[StrictStr, Field(max_length=MAX_REASON, examples=["damaged in transit"])] = ""


class RefundView(BaseModel):
    id: str
    order_id: str
    out_refund_no: str
    amount: int
    currency: str
    reason: str
    status: RefundStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, refund: Refund) -> RefundView:
        return cls(
            id=refund.id,
            order_id=refund.order_id,
            out_refund_no=refund.out_refund_no,
            amount=refund.amount,
            currency=refund.currency,
            reason=refund.reason,
            status=refund.status,
            created_at=refund.created_at,
            updated_at=refund.updated_at,
        )


class RefundList(BaseModel):
    items: list[RefundView]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
