"""The shop closes an unpaid order: close its attempt at WeChat, confirm by query, then close.

``close_order(service, order_id)``: WeChat is asked to close the current attempt, then asked
what the attempt's state is (WeChat's advice: confirm a close by querying). A verified "paid"
answer goes through :meth:`PaymentService.apply_payment_report` (the order becomes paid, never
closed); otherwise the order is closed by the state machine with its attempt, in one
transaction. Closing a closed order is a no-op; a paid or refunded order cannot be closed
(:class:`InvalidTransitionError`, 409). A transient WeChat failure changes nothing.
"""

from __future__ import annotations

import logging

from scanpay.domain.machine import Trigger
from scanpay.domain.model import AttemptStatus, Order, OrderStatus
from scanpay.domain.ports import AttemptUpdate
from scanpay.domain.query_log import Asker
from scanpay.domain.service import PaymentService, ReportVerdict
from scanpay.domain.trade_state import PaymentMeaning, meaning_of
from scanpay.errors import ApiError, InvalidTransitionError, RetryableApiError

log = logging.getLogger(__name__)


async def close_order(service: PaymentService, order_id: str) -> Order:
    store, gateway = service.store, service.gateway
    order = await store.get_order(order_id)
    if order.status is OrderStatus.CLOSED:
        return order
    if order.status is not OrderStatus.PENDING:
        raise InvalidTransitionError(f"an order that is {order.status.value} cannot be closed",
                                     code="ORDER_NOT_OPEN")  # fmt: skip
    attempt = await store.current_attempt(order_id)
    known_at_wechat = attempt.status is not AttemptStatus.FAILED
    if known_at_wechat:
        try:
            await gateway.close_payment(attempt.out_trade_no)
        except RetryableApiError:
            raise
        except ApiError as exc:  # e.g. ORDERPAID: the query below tells what happened
            log.info("close refused out_trade_no=%s code=%s", attempt.out_trade_no, exc.code)
        try:
            report, answered = await service.ask_wechat(attempt, Asker.SHOP)
        except RetryableApiError:
            raise
        except ApiError as exc:  # WeChat does not know it (never created there): nothing to pay
            log.info("close: query refused out_trade_no=%s code=%s",
                     attempt.out_trade_no, exc.code)  # fmt: skip
        else:
            meaning = meaning_of(report.trade_state)
            if meaning is PaymentMeaning.PAID:
                outcome = await service.apply_payment_report(report)
                await service.record_answer(answered, outcome.verdict.value, outcome.reason)
                return await store.get_order(order_id)
            await service.record_answer(answered, ReportVerdict.NOTED.value, "close")
    try:
        await store.apply_trigger(
            order_id,
            Trigger.CLOSE,
            {"out_trade_no": attempt.out_trade_no, "source": "shop_api"},
            AttemptUpdate(attempt.id, AttemptStatus.CLOSED),
        )
    except InvalidTransitionError:
        pass_through = await store.get_order(order_id)  # settled meanwhile (paid): report it
        return pass_through
    return await store.get_order(order_id)
