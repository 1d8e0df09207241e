"""Request and response bodies of the shop API (pydantic, strict: no floats, no extras)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from scanpay.domain.model import MAX_AMOUNT, MAX_DESCRIPTION, Order, OrderStatus, PaymentAttempt


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

    @classmethod
    def of(cls, order: Order, attempt: PaymentAttempt, base_url: str) -> OrderView:
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
        )


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
