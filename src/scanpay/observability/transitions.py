"""``scanpay_order_transitions_total`` by source, counted where the store makes them (issue 9).

:func:`watch_store` wraps three methods of one store instance (the domain knows nothing of
metrics): ``settle_payment`` (the notification fast path), ``apply_trigger`` (every other
order transition: payments by notification or query, expiry, the shop's close) and
``move_refund`` (a successful refund settles its order's side). Sources: ``notification``,
``query``, ``expiry``, ``shop``, ``refund``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from scanpay.domain.machine import Trigger
from scanpay.domain.refunds import RefundStatus
from scanpay.domain.service import ReportVerdict
from scanpay.observability import metrics
from scanpay.store.refunds import SqlRefundStore


def source_of(trigger: Trigger, data: Mapping[str, Any]) -> str:
    if trigger is Trigger.EXPIRE:
        return "expiry"
    if trigger is Trigger.CLOSE:
        return "shop"
    if trigger is Trigger.PAYMENT_SUCCEEDED:
        origin = str(data.get("source", ""))
        return "notification" if origin.startswith("notification") else "query"
    return "refund"


def watch_store(store: SqlRefundStore) -> None:
    apply_trigger, settle_payment, move_refund = (
        store.apply_trigger, store.settle_payment, store.move_refund,
    )  # fmt: skip

    @functools.wraps(apply_trigger)
    async def applying(order_id: str, trigger: Trigger, data: Mapping[str, Any],
                       *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        applied = await apply_trigger(order_id, trigger, data, *args, **kwargs)
        if applied.event is not None:
            metrics.TRANSITIONS.labels(source_of(trigger, data), trigger.value).inc()
        return applied

    @functools.wraps(settle_payment)
    async def settling(report: Any, judge: Any, trigger: Trigger, data: Mapping[str, Any],
                       *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        outcome = await settle_payment(report, judge, trigger, data, *args, **kwargs)
        if outcome is not None and outcome.verdict is ReportVerdict.APPLIED:
            metrics.TRANSITIONS.labels(source_of(trigger, data), trigger.value).inc()
        return outcome

    @functools.wraps(move_refund)
    async def moving(refund_id: str, expected: RefundStatus, to: RefundStatus,
                     *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        moved = await move_refund(refund_id, expected, to, *args, **kwargs)
        if moved is not None and to is RefundStatus.SUCCESS and moved.settles_order:
            metrics.TRANSITIONS.labels("refund", "refund").inc()
        return moved

    store.apply_trigger = applying  # type: ignore[method-assign]
    store.settle_payment = settling  # type: ignore[method-assign]
    store.move_refund = moving  # type: ignore[method-assign]
