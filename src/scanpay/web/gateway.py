"""``V2Gateway``: the domain's :class:`~scanpay.domain.ports.PaymentGateway` over ``V2Client``.

A thin translation between the domain's words and WeChat's v2 wire names; no logic.
"""

from __future__ import annotations

from dataclasses import replace

from scanpay.client.v2 import V2Client
from scanpay.domain.model import ApiVersion, NativeOrderRequest, PaymentReport, ReportSource
from scanpay.wechat.v2.orders import OrderStatus as WireStatus
from scanpay.wechat.v2.orders import UnifiedOrder


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


class V2Gateway:
    """WeChat Pay API v2 for one merchant, with the service's notification URL."""

    api_version = ApiVersion.V2

    def __init__(self, client: V2Client, *, notify_url: str) -> None:
        self.client = client
        self.notify_url = notify_url

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
