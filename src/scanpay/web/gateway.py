"""Gateways: the domain's ports (:class:`~scanpay.domain.ports.PaymentGateway` and
:class:`~scanpay.domain.refunds.RefundGateway`) over ``V2Client`` and ``V3Client``.

Thin translations between the domain's words and WeChat's wire names; no logic. Both
gateways send the service's own notification URLs (payments and refunds).
"""

from __future__ import annotations

from dataclasses import replace

from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.domain.model import ApiVersion, NativeOrderRequest, PaymentReport, ReportSource
from scanpay.domain.refunds import RefundReport, RefundSubmission
from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import format_v2_time
from scanpay.wechat.states import RefundState
from scanpay.wechat.v2.orders import OrderStatus as WireStatus
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v2.refund_notify import RefundNotification
from scanpay.wechat.v2.refunds import RefundQuery, RefundRequest
from scanpay.wechat.v3.refunds import Refund as V3Refund
from scanpay.wechat.v3.refunds import RefundApplication
from scanpay.wechat.v3.transactions import NativeOrder, Transaction


def report_from_v2(status: WireStatus, source: ReportSource) -> PaymentReport:
    """A verified v2 order status (query answer or notification) in the domain's words."""
    return PaymentReport(
        out_trade_no=status.out_trade_no,
        trade_state=status.trade_state,
        amount=status.total_fee,
        currency=status.fee_type,
        transaction_id=status.transaction_id,
        appid=status.appid,
        mchid=status.mch_id,
        source=source,
    )


def report_from_v3(transaction: Transaction, source: ReportSource) -> PaymentReport:
    """A verified v3 Transaction (query answer or TRANSACTION.SUCCESS) in the domain's words."""
    return PaymentReport(
        out_trade_no=transaction.out_trade_no,
        trade_state=transaction.trade_state,
        amount=transaction.total,
        currency=transaction.currency,
        transaction_id=transaction.transaction_id,
        appid=transaction.appid,
        mchid=transaction.mchid,
        source=source,
    )


def refund_report_from_v2(notification: RefundNotification) -> RefundReport:
    return RefundReport(
        out_refund_no=notification.out_refund_no,
        state=notification.refund_status.state,
        source="notification_v2",
        refund_id=notification.refund_id,
        out_trade_no=notification.out_trade_no,
        amount=notification.refund_fee,
        mchid=notification.mch_id,
    )


def refund_report_from_v3(refund: V3Refund, source: str) -> RefundReport:
    return RefundReport(
        out_refund_no=refund.out_refund_no,
        state=refund.status,
        source=source,
        refund_id=refund.refund_id,
        out_trade_no=refund.out_trade_no,
        amount=refund.refund or None,
        mchid=refund.mchid,
    )


class V2Gateway:
    """WeChat Pay API v2 for one merchant, with the service's notification URLs."""

    api_version = ApiVersion.V2

    def __init__(self, client: V2Client, *, notify_url: str, refund_notify_url: str = "") -> None:
        self.client = client
        self.notify_url = notify_url
        self.refund_notify_url = refund_notify_url

    @property
    def appid(self) -> str:
        return self.client.merchant.appid

    @property
    def mchid(self) -> str:
        return self.client.merchant.mch_id

    async def create_native_order(self, request: NativeOrderRequest) -> str:
        order = UnifiedOrder(
            out_trade_no=request.out_trade_no,
            body=request.description,
            total_fee=request.amount,
            notify_url=self.notify_url,
            product_id=request.product_id,
            fee_type=request.currency,
            time_expire=format_v2_time(request.time_expire) if request.time_expire else "",
        )
        result = await self.client.create_native_order(order)
        return result.code_url

    async def query_payment(self, out_trade_no: str) -> PaymentReport:
        status = await self.client.query_order(out_trade_no=out_trade_no)
        # decode_response already refused an answer naming another merchant; an answer that
        # leaves the ids out was still signed with this merchant's key.
        report = report_from_v2(status, ReportSource.QUERY_V2)
        if not report.appid or not report.mchid:
            report = replace(report, appid=report.appid or self.appid,
                             mchid=report.mchid or self.mchid)  # fmt: skip
        return report

    async def close_payment(self, out_trade_no: str) -> None:
        await self.client.close_order(out_trade_no)

    async def submit_refund(self, submission: RefundSubmission) -> RefundReport:
        result = await self.client.refund(
            RefundRequest(
                out_refund_no=submission.out_refund_no,
                total_fee=submission.total,
                refund_fee=submission.amount,
                out_trade_no=submission.out_trade_no,
                refund_fee_type=submission.currency,
                refund_desc=submission.reason,
                notify_url=self.refund_notify_url,
            )
        )
        if result.out_refund_no != submission.out_refund_no:
            raise MalformedMessageError("refund answer is about another refund")
        return RefundReport(
            out_refund_no=result.out_refund_no,
            state=RefundState.PROCESSING,  # v2: an accepted refund is not yet done
            source="answer_v2",
            refund_id=result.refund_id,
            out_trade_no=result.out_trade_no,
            amount=result.refund_fee,
        )

    async def query_refund(self, out_refund_no: str) -> RefundReport:
        result = await self.client.query_refund(RefundQuery(out_refund_no=out_refund_no))
        for item in result.refunds:
            if item.out_refund_no == out_refund_no:
                return RefundReport(
                    out_refund_no=out_refund_no,
                    state=item.refund_status.state,
                    source="query_v2",
                    refund_id=item.refund_id,
                    out_trade_no=result.out_trade_no,
                    amount=item.refund_fee,
                )
        raise MalformedMessageError("refund query answer does not list this refund")


class V3Gateway:
    """WeChat Pay API v3 for one merchant and app, with the service's notification URLs."""

    api_version = ApiVersion.V3

    def __init__(
        self, client: V3Client, *, appid: str, notify_url: str, refund_notify_url: str = ""
    ) -> None:
        self.client = client
        self._appid = appid
        self.notify_url = notify_url
        self.refund_notify_url = refund_notify_url

    @property
    def appid(self) -> str:
        return self._appid

    @property
    def mchid(self) -> str:
        return self.client.merchant.mchid

    async def create_native_order(self, request: NativeOrderRequest) -> str:
        order = NativeOrder(
            appid=self.appid,
            mchid=self.mchid,
            description=request.description,
            out_trade_no=request.out_trade_no,
            notify_url=self.notify_url,
            total=request.amount,
            currency=request.currency,
            time_expire=getattr(request, "time_expire", None),
        )
        return await self.client.create_native_order(order)

    async def query_payment(self, out_trade_no: str) -> PaymentReport:
        transaction = await self.client.query_by_out_trade_no(out_trade_no)
        return report_from_v3(transaction, ReportSource.QUERY_V3)

    async def close_payment(self, out_trade_no: str) -> None:
        await self.client.close_order(out_trade_no)

    async def submit_refund(self, submission: RefundSubmission) -> RefundReport:
        refund = await self.client.create_refund(
            RefundApplication(
                out_refund_no=submission.out_refund_no,
                refund=submission.amount,
                total=submission.total,
                out_trade_no=submission.out_trade_no,
                reason=submission.reason,
                notify_url=self.refund_notify_url,
                currency=submission.currency,
            )
        )
        return refund_report_from_v3(refund, "answer_v3")

    async def query_refund(self, out_refund_no: str) -> RefundReport:
        return refund_report_from_v3(await self.client.query_refund(out_refund_no), "query_v3")
