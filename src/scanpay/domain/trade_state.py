"""What each WeChat Pay ``trade_state`` means for a payment attempt: one total mapping.

Every :class:`~scanpay.wechat.states.TradeState` of v2 and v3 has exactly one meaning here;
``assert_never`` makes mypy reject a state added to the enum but not to this function.
"""

from __future__ import annotations

from enum import StrEnum
from typing import assert_never

from scanpay.domain.machine import Trigger
from scanpay.wechat.states import TradeState


class PaymentMeaning(StrEnum):
    PAID = "paid"  # money reached the merchant (a later refund does not undo the payment)
    WAITING = "waiting"  # not paid yet; the shopper may still pay
    CLOSED = "closed"  # the attempt can never be paid
    FAILED = "failed"  # a payment try failed; the attempt stays payable (NOTPAY semantics)


def meaning_of(state: TradeState) -> PaymentMeaning:
    match state:
        case TradeState.SUCCESS | TradeState.REFUND:
            return PaymentMeaning.PAID
        case TradeState.NOTPAY | TradeState.USERPAYING | TradeState.ACCEPT:
            return PaymentMeaning.WAITING
        case TradeState.CLOSED | TradeState.REVOKED:
            return PaymentMeaning.CLOSED
        case TradeState.PAYERROR:
            return PaymentMeaning.FAILED
        case _:
            assert_never(state)


def trigger_for(meaning: PaymentMeaning) -> Trigger | None:
    """The order trigger a meaning fires, if any. A closed attempt does not close its order:
    the order may get a new attempt (issue 5)."""
    match meaning:
        case PaymentMeaning.PAID:
            return Trigger.PAYMENT_SUCCEEDED
        case PaymentMeaning.WAITING | PaymentMeaning.CLOSED | PaymentMeaning.FAILED:
            return None
        case _:
            assert_never(meaning)
