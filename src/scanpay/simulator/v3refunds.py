"""API v3 refunds as WeChat answers them: ``POST /v3/refund/domestic/refunds`` and
``GET /v3/refund/domestic/refunds/{out_refund_no}`` (PROTOCOL.md 3.8).

The request must carry a valid ``Authorization`` (401 ``SIGN_ERROR``), answers are signed like
every v3 answer (:class:`~scanpay.simulator.v3api.V3Api`). Errors: 400 ``PARAM_ERROR``
(malformed body, currency not CNY), 404 ``RESOURCE_NOT_EXISTS`` (no such order, no such
refund), 400 ``INVALID_REQUEST`` (order not paid, ``amount.total`` not the order's, refunds
above the amount paid, an ``out_refund_no`` reused with different parameters, paid more than a
year ago), 403 ``RULE_LIMIT`` (more than 50 refunds). The same ``out_refund_no`` with the same
parameters answers the refund made the first time, in its current state.
"""

from __future__ import annotations

from typing import Final

from scanpay.errors import MalformedMessageError
from scanpay.simulator.refunds import RefundAsk, RefundBook, RefundRefused, Refusal, v3_refund
from scanpay.simulator.v3api import V3Answer, V3Api, V3Request
from scanpay.wechat.v3.jsonbody import dump_json
from scanpay.wechat.v3.refunds import parse_refund_request

V3_ERRORS: Final = {
    Refusal.ORDER_NOT_FOUND: (404, "RESOURCE_NOT_EXISTS"),
    Refusal.NOT_PAID: (400, "INVALID_REQUEST"),
    Refusal.TOO_OLD: (400, "INVALID_REQUEST"),
    Refusal.TOTAL_MISMATCH: (400, "INVALID_REQUEST"),
    Refusal.OVER_REFUND: (400, "INVALID_REQUEST"),
    Refusal.TOO_MANY: (403, "RULE_LIMIT"),
    Refusal.NUMBER_REUSED: (400, "INVALID_REQUEST"),
}


class V3Refunds:
    def __init__(self, v3: V3Api, book: RefundBook) -> None:
        self._v3 = v3
        self._book = book

    def create(self, request: V3Request) -> V3Answer:
        refused = self._v3._authenticate(request)
        if refused is not None:
            return refused
        try:
            application = parse_refund_request(request.body)
        except MalformedMessageError as exc:
            return self._v3._error(request, 400, "PARAM_ERROR", exc.message)
        if application.currency != "CNY":
            return self._v3._error(request, 400, "PARAM_ERROR", "amount.currency must be CNY")
        ask = RefundAsk(
            out_refund_no=application.out_refund_no,
            total_fee=application.total,
            refund_fee=application.refund,
            out_trade_no=application.out_trade_no,
            transaction_id=application.transaction_id,
            reason=application.reason,
            notify_url=application.notify_url,
        )
        try:
            refund = self._book.apply(ask, api="v3")
        except RefundRefused as exc:
            status, code = V3_ERRORS[exc.reason]
            return self._v3._error(request, status, code, exc.message)
        return self._refund_answer(request, refund.out_refund_no)

    def query(self, request: V3Request, out_refund_no: str) -> V3Answer:
        refused = self._v3._authenticate(request)
        if refused is not None:
            return refused
        self._book.settle()  # a query never shows a refund late
        return self._refund_answer(request, out_refund_no)

    def _refund_answer(self, request: V3Request, out_refund_no: str) -> V3Answer:
        refund = self._book.get(out_refund_no)
        order = None if refund is None else self._book.find_order(out_trade_no=refund.out_trade_no)
        if refund is None or order is None:
            return self._v3._error(request, 404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        body = v3_refund(refund, order).to_json()
        body.pop("mchid", None)  # the create/query answer has no mchid (the notification has)
        return self._v3._answer(request, 200, dump_json(body))
