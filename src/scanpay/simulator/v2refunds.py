"""API v2 ``secapi/pay/refund`` and ``pay/refundquery`` as WeChat answers them (PROTOCOL.md
2.6, 2.7).

The envelope checks (XML, ``mch_id``, ``sign`` with the declared sign type, ``appid``) are
those of the other v2 calls (:class:`~scanpay.simulator.v2api.V2Api`); answers are signed with
the request's sign type. Mutual TLS is not simulated: the real ``secapi`` path demands the
merchant's client certificate, but the simulator serves plain HTTP (and in-process tests use
``httpx.ASGITransport``), so the call is accepted without one.

Business errors (``result_code=FAIL``): ``ORDERNOTEXIST`` (no such order),
``INVALID_REQUEST`` (order not paid, ``total_fee`` not the order's, refunds above the amount
paid, the same ``out_refund_no`` with different parameters), ``TRADE_OVERDUE`` (paid more than
a year ago), ``INVALID_REQ_TOO_MUCH`` (more than 50 refunds), ``PARAM_ERROR`` (malformed
fields); ``REFUNDNOTEXIST`` for a refund query that finds nothing.
"""

from __future__ import annotations

from typing import Final

from scanpay.errors import MalformedMessageError
from scanpay.simulator.ledger import Order
from scanpay.simulator.refunds import RefundAsk, RefundBook, RefundRefused, Refusal, SimRefund
from scanpay.simulator.v2api import V2Api
from scanpay.wechat.v2.refunds import (
    RefundItem,
    RefundQuery,
    RefundQueryResult,
    RefundRequest,
    RefundResult,
)

V2_CODES: Final = {
    Refusal.ORDER_NOT_FOUND: "ORDERNOTEXIST",
    Refusal.NOT_PAID: "INVALID_REQUEST",
    Refusal.TOO_OLD: "TRADE_OVERDUE",
    Refusal.TOTAL_MISMATCH: "INVALID_REQUEST",
    Refusal.OVER_REFUND: "INVALID_REQUEST",
    Refusal.TOO_MANY: "INVALID_REQ_TOO_MUCH",
    Refusal.NUMBER_REUSED: "INVALID_REQUEST",
}
PAGE: Final = 10  # refunds per answer when the query gives an offset


class V2Refunds:
    def __init__(self, v2: V2Api, book: RefundBook) -> None:
        self._v2 = v2
        self._book = book

    def refund(self, body: bytes) -> bytes:
        opened = self._v2._open(body)
        if isinstance(opened, bytes):
            return opened
        fields, sign_type = opened
        for name in ("out_refund_no", "total_fee", "refund_fee"):
            if not fields.get(name):
                return self._v2._fail(sign_type, "LACK_PARAMS", f"缺少参数{name}")
        try:
            request = RefundRequest.from_fields(fields)
        except MalformedMessageError as exc:
            return self._v2._fail(sign_type, "PARAM_ERROR", exc.message)
        if request.refund_fee_type not in ("", "CNY"):
            return self._v2._fail(sign_type, "PARAM_ERROR", "refund_fee_type must be CNY")
        ask = RefundAsk(
            out_refund_no=request.out_refund_no,
            total_fee=request.total_fee,
            refund_fee=request.refund_fee,
            out_trade_no=request.out_trade_no,
            transaction_id=request.transaction_id,
            reason=request.refund_desc,
            notify_url=request.notify_url,
        )
        try:
            refund = self._book.apply(ask, api="v2")
        except RefundRefused as exc:
            return self._v2._fail(sign_type, V2_CODES[exc.reason], exc.message)
        order = self._book.find_order(out_trade_no=refund.out_trade_no)
        assert order is not None
        result = RefundResult(
            transaction_id=order.transaction_id or "",
            out_trade_no=order.out_trade_no,
            out_refund_no=refund.out_refund_no,
            refund_id=refund.refund_id,
            refund_fee=refund.refund_fee,
            total_fee=refund.total_fee,
            cash_fee=refund.total_fee,
            settlement_refund_fee=refund.refund_fee,
            settlement_total_fee=refund.total_fee,
            cash_refund_fee=refund.refund_fee,
        )
        return self._v2._answer(sign_type, result.to_fields())

    def refund_query(self, body: bytes) -> bytes:
        opened = self._v2._open(body)
        if isinstance(opened, bytes):
            return opened
        fields, sign_type = opened
        try:
            query = RefundQuery.from_fields(fields)
        except MalformedMessageError as exc:
            return self._v2._fail(sign_type, "PARAM_ERROR", exc.message)
        self._book.settle()  # a query never shows a refund late
        found = self._lookup(query)
        if found is None:
            return self._v2._fail(sign_type, "REFUNDNOTEXIST", "not exist")
        order, refunds = found
        everything = len(refunds)
        if query.offset is not None:
            if query.offset >= everything:
                return self._v2._fail(sign_type, "PARAM_ERROR", "offset is past the last refund")
            refunds = refunds[query.offset : query.offset + PAGE]
        result = RefundQueryResult(
            transaction_id=order.transaction_id or "",
            out_trade_no=order.out_trade_no,
            total_fee=order.total_fee,
            cash_fee=order.total_fee,
            refunds=tuple(item(r) for r in refunds),
            total_refund_count=everything if query.offset is not None else None,
            settlement_total_fee=order.total_fee,
        )
        return self._v2._answer(sign_type, result.to_fields())

    def _lookup(self, query: RefundQuery) -> tuple[Order, list[SimRefund]] | None:
        name, value = query.key
        if name in ("refund_id", "out_refund_no"):
            refund = (
                self._book.by_refund_id(value) if name == "refund_id" else self._book.get(value)
            )
            if refund is None:
                return None
            order = self._book.find_order(out_trade_no=refund.out_trade_no)
            return (order, [refund]) if order is not None else None
        order = self._book.find_order(**{name: value})
        if order is None:
            return None
        refunds = self._book.of_order(order.out_trade_no)
        return (order, refunds) if refunds else None


def item(refund: SimRefund) -> RefundItem:
    return RefundItem(
        out_refund_no=refund.out_refund_no,
        refund_id=refund.refund_id,
        refund_fee=refund.refund_fee,
        refund_status=refund.v2_status,
        refund_channel="ORIGINAL",
        settlement_refund_fee=refund.refund_fee,
        refund_account="REFUND_SOURCE_UNSETTLED_FUNDS",
        refund_recv_accout="支付用户零钱",
        refund_success_time=refund.success_time_v2(),
    )
