"""Domain records: orders, payment attempts, events and what WeChat Pay says about a payment.

Money is ``int`` fen; vocabularies are ``StrEnum``; records are frozen dataclasses that check
their own rules on construction. Identifiers are made here from injected time and randomness.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from scanpay.errors import ValidationError
from scanpay.wechat.fields import OUT_TRADE_NO
from scanpay.wechat.states import TradeState

CURRENCY: Final = "CNY"
MAX_AMOUNT: Final = 2**31 - 1
MAX_DESCRIPTION: Final = 127
_ALPHANUM: Final = string.ascii_letters + string.digits


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CLOSED = "closed"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class AttemptStatus(StrEnum):
    CREATING = "creating"  # stored, WeChat not (yet) answered with a code_url
    ACTIVE = "active"  # code_url known, shopper may pay
    PAID = "paid"
    CLOSED = "closed"  # closed at WeChat (or never created there): can never be paid
    FAILED = "failed"  # WeChat refused the order; never payable
    SURPLUS = "surplus"  # paid, but the order was already paid or settled: refunded


class ApiVersion(StrEnum):
    V2 = "v2"
    V3 = "v3"


class EventType(StrEnum):
    CREATED = "created"
    QR_READY = "qr_ready"
    ATTEMPT_FAILED = "attempt_failed"
    ATTEMPT_CLOSED = "attempt_closed"
    PAID = "paid"
    CLOSED = "closed"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    ALERT = "alert"
    REFUND_SUCCEEDED = "refund_succeeded"  # a refund's own outcome (the shop's refund.*)
    REFUND_FAILED = "refund_failed"


# Event types a shopper's page may see; alerts and refund outcomes stay internal.
PUBLIC_EVENTS: Final = frozenset(EventType) - {
    EventType.ALERT,
    EventType.REFUND_SUCCEEDED,
    EventType.REFUND_FAILED,
}


class ReportSource(StrEnum):
    NOTIFICATION_V2 = "notification_v2"
    QUERY_V2 = "query_v2"
    NOTIFICATION_V3 = "notification_v3"
    QUERY_V3 = "query_v3"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_order_id(token: Callable[[int], str] = secrets.token_urlsafe) -> str:
    """A public order id: ``ord_`` and 128 random bits, so ids cannot be guessed."""
    return "ord_" + token(16)


def new_attempt_id(token: Callable[[int], str] = secrets.token_urlsafe) -> str:
    return "att_" + token(16)


def new_out_trade_no(now: datetime, choose: Callable[[str], str] = secrets.choice) -> str:
    """``sp`` + UTC ``yymmddHHMMSS`` + 16 random letters/digits: 30 chars of WeChat's set.

    The time prefix keeps numbers readable and sortable; 95 random bits make two processes
    colliding in the same second practically impossible. The unique index is the real guard.
    """
    stamp = now.astimezone(UTC).strftime("%y%m%d%H%M%S")
    value = "sp" + stamp + "".join(choose(_ALPHANUM) for _ in range(16))
    assert OUT_TRADE_NO.fullmatch(value)
    return value


def check_amount(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AMOUNT:
        raise ValidationError(
            f"amount must be a whole number of fen from 1 to {MAX_AMOUNT}", code="INVALID_AMOUNT"
        )
    return value


def check_description(value: str) -> str:
    if not value.strip() or len(value) > MAX_DESCRIPTION:
        raise ValidationError(
            f"description must be 1 to {MAX_DESCRIPTION} characters", code="INVALID_DESCRIPTION"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError("description must not contain control characters",
                              code="INVALID_DESCRIPTION")  # fmt: skip
    return value


@dataclass(frozen=True)
class Order:
    id: str
    amount: int
    description: str
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    currency: str = CURRENCY
    last_seq: int = 0
    expires_at: datetime | None = None  # overall deadline; unpaid after it -> expired
    return_url: str | None = None  # the shop's page the shopper goes back to (validated by the API)

    def __post_init__(self) -> None:
        check_amount(self.amount)
        check_description(self.description)
        if self.currency != CURRENCY:
            raise ValidationError("only CNY is supported", code="INVALID_CURRENCY")


@dataclass(frozen=True)
class PaymentAttempt:
    """One order at WeChat Pay: one ``out_trade_no``, one API version, one merchant."""

    id: str
    order_id: str
    out_trade_no: str
    api_version: ApiVersion
    appid: str
    mchid: str
    amount: int
    currency: str
    status: AttemptStatus
    created_at: datetime
    updated_at: datetime
    code_url: str | None = None
    transaction_id: str | None = None
    expires_at: datetime | None = None  # end of the payment window (closed at WeChat after)
    next_query_at: datetime | None = None  # the reconciler's next look; None: nothing to do
    query_count: int = 0
    last_query_at: datetime | None = None

    @property
    def open(self) -> bool:
        """Whether the shopper may still pay this attempt (as far as we know)."""
        return self.status in (AttemptStatus.CREATING, AttemptStatus.ACTIVE)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def __post_init__(self) -> None:
        if not OUT_TRADE_NO.fullmatch(self.out_trade_no):
            raise ValidationError("out_trade_no breaks WeChat's 6-32 character rule")
        check_amount(self.amount)


@dataclass(frozen=True)
class Event:
    """One line of an order's audit log; ``seq`` counts from 1 per order."""

    order_id: str | None
    seq: int
    type: EventType
    status: OrderStatus | None  # the order's status after this event
    data: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class PaymentReport:
    """A verified statement by WeChat Pay about one ``out_trade_no`` (notification or query)."""

    out_trade_no: str
    trade_state: TradeState
    amount: int | None
    currency: str
    transaction_id: str
    appid: str
    mchid: str
    source: ReportSource
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NativeOrderRequest:
    """What the domain asks the gateway to open at WeChat Pay."""

    out_trade_no: str
    description: str
    amount: int
    currency: str
    product_id: str
    time_expire: datetime | None = None  # the attempt's expiry, sent as WeChat's time_expire
