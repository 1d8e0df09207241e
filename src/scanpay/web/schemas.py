"""Request and response bodies of the shop API (pydantic, strict: no floats, no extras).

``return_url`` rules (:func:`check_return_url`, answered with 422 ``INVALID_RETURN_URL``):
an absolute ``http``/``https`` URL with a host, at most 2048 printable ASCII characters, no
user name or password in it (``https://shop.example@evil.example/`` tricks).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from scanpay.domain.model import MAX_AMOUNT, MAX_DESCRIPTION, Order, OrderStatus, PaymentAttempt
from scanpay.domain.refunds import MAX_REASON, Refund, RefundStatus
from scanpay.errors import ValidationError

MAX_RETURN_URL: Final = 2048


def check_return_url(value: str) -> str:
    """``value`` if it is an acceptable return URL, else :class:`ValidationError`."""

    def invalid(why: str) -> ValidationError:
        return ValidationError(f"return_url {why}", code="INVALID_RETURN_URL")

    if len(value) > MAX_RETURN_URL:
        raise invalid(f"must be at most {MAX_RETURN_URL} characters")
    if not value.isascii() or any(ord(c) <= 32 or ord(c) == 127 for c in value):
        raise invalid("must be printable ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise invalid("is not a valid URL") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise invalid("must be an http or https URL")
    if not parts.hostname:
        raise invalid("must name a host")
    if "@" in parts.netloc:
        raise invalid("must not contain a user name or password")
    if port == 0:
        raise invalid("has an invalid port")
    return value


class CreateOrder(BaseModel):
    """A new order: ``amount`` in fen (whole number), a description the shopper sees."""

    model_config = ConfigDict(extra="forbid", strict=True)

    amount: Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT, examples=[1999])]
    description: Annotated[
        StrictStr, Field(min_length=1, max_length=MAX_DESCRIPTION, examples=["Green tea, 250 g"])
    ]
    return_url: Annotated[
        StrictStr | None,
        Field(
            description="Optional: the shop page the checkout page links back to once the order "
            "is settled (http/https, at most 2048 characters; else 422 INVALID_RETURN_URL)",
            examples=["https://shop.example/orders/42"],
            json_schema_extra={"maxLength": MAX_RETURN_URL},
        ),
    ] = None

    def fingerprint(self) -> str:
        # None fields are left out, so keys stored before return_url existed still match
        canonical = json.dumps(
            self.model_dump(exclude_none=True), sort_keys=True, separators=(",", ":")
        )
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
    return_url: str | None = None

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
            return_url=order.return_url,
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
