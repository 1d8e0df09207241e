"""V3Client refunds and bills against the simulator (in-process ASGI), in public-key and
certificate mode; refund notifications pass scanpay's own verify + decrypt."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest

from scanpay.client.v3 import V3Client
from scanpay.errors import ApiError
from scanpay.simulator import SimClock, Simulator, generate_credentials
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.keys import TrustStore, load_certificate, load_private_key, load_public_key
from scanpay.wechat.states import RefundState, TradeState
from scanpay.wechat.v3.bills import AccountType, TradeBillType
from scanpay.wechat.v3.notify import RefundNotice, verify_notification
from scanpay.wechat.v3.refunds import RefundApplication
from scanpay.wechat.v3.transactions import NativeOrder

START = datetime(2025, 6, 30, 4, 0, tzinfo=UTC)  # 12:00 Beijing
DAY = date(2025, 6, 30)


@pytest.fixture(scope="module")
def credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    return generate_credentials()


class Inbox(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.received: dict[str, list[tuple[httpx.Headers, bytes]]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        entry = (request.headers, await request.aread())
        self.received.setdefault(request.url.path, []).append(entry)
        return httpx.Response(204)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def sim(
    credentials: tuple[MerchantCredentials, SimulatorKeys], inbox: Inbox
) -> AsyncIterator[Simulator]:
    simulator = Simulator.create(
        clock=SimClock(start=START),
        notify_transport=inbox,
        credentials=credentials,
        public_url="http://sim.test",
    )
    async with simulator:
        yield simulator
    simulator.close()


def trust_for(sim: Simulator, mode: str) -> TrustStore:
    creds = sim.credentials
    trust = TrustStore()
    if mode == "public-key":
        trust.add_public_key(
            creds.wechatpay_public_key_id, load_public_key(creds.wechatpay_public_key_pem)
        )
    else:
        trust.add_certificate(load_certificate(creds.platform_certificate_pem))
    return trust


@pytest.fixture(params=["public-key", "certificate"])
async def client(sim: Simulator, request: pytest.FixtureRequest) -> AsyncIterator[V3Client]:
    creds = sim.credentials
    async with V3Client(
        creds.mchid,
        creds.merchant_serial_no,
        load_private_key(creds.merchant_private_key_pem.reveal()),
        creds.api_v3_key,
        trust_for(sim, request.param),
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=sim.app),
    ) as v3:
        yield v3


async def pay(sim: Simulator, client: V3Client, number: str, total: int) -> str:
    code_url = await client.create_native_order(
        NativeOrder(
            appid=sim.credentials.appid,
            mchid=sim.credentials.mchid,
            description="Pu-erh cake",
            out_trade_no=number,
            notify_url="http://shop.test/notify/v3",
            total=total,
        )
    )
    return (await sim.pay(code_url=code_url)).transaction_id


async def test_refunds_and_refund_notification(
    sim: Simulator, client: V3Client, inbox: Inbox
) -> None:
    transaction_id = await pay(sim, client, "v3c-refund-01", 5000)
    first = await client.create_refund(
        RefundApplication(
            out_refund_no="v3c-r-01",
            refund=1000,
            total=5000,
            out_trade_no="v3c-refund-01",
            reason="cracked",
            notify_url="http://shop.test/refund/v3",
        )
    )
    assert (first.status, first.transaction_id) == (RefundState.PROCESSING, transaction_id)
    second = await client.create_refund(
        RefundApplication(
            out_refund_no="v3c-r-02", refund=4000, total=5000, transaction_id=transaction_id
        )
    )
    assert second.out_trade_no == "v3c-refund-01"
    with pytest.raises(ApiError) as over:
        await client.create_refund(
            RefundApplication(
                out_refund_no="v3c-r-03", refund=1, total=5000, out_trade_no="v3c-refund-01"
            )
        )
    assert (over.value.http_status, over.value.code) == (400, "INVALID_REQUEST")
    assert over.value.request_id

    sim.clock.advance(1)
    await sim.deliver_due_notifications()
    done = await client.query_refund("v3c-r-01")
    assert done.status is RefundState.SUCCESS
    assert done.channel == "ORIGINAL"
    assert (done.payer_total, done.payer_refund) == (5000, 1000)
    assert (await client.query_by_out_trade_no("v3c-refund-01")).trade_state is TradeState.REFUND

    [(headers, body)] = inbox.received["/refund/v3"]  # the second refund had no notify_url
    notice = await client.verify_notification(headers, body)
    assert isinstance(notice, RefundNotice)
    assert notice.refund.mchid == sim.credentials.mchid
    assert (notice.refund.out_refund_no, notice.refund.status) == ("v3c-r-01", RefundState.SUCCESS)
    plain = verify_notification(
        headers, body, client.trust, sim.credentials.api_v3_key, now=int(time.time())
    )
    assert isinstance(plain, RefundNotice)
    assert plain.refund == notice.refund


async def test_trade_and_fund_flow_bills(sim: Simulator, client: V3Client) -> None:
    await pay(sim, client, "v3c-bill-01", 300)
    await pay(sim, client, "v3c-bill-02", 700)
    await client.create_refund(
        RefundApplication(
            out_refund_no="v3c-bill-r", refund=700, total=700, out_trade_no="v3c-bill-02"
        )
    )
    sim.clock.advance(1)
    await sim.deliver_due_notifications()
    for packed in (False, True):
        bill = await client.trade_bill(DAY, gzip=packed)
        assert bill.summary.trade_count == 3
        assert bill.summary.refund_total_fen == 700
    success = await client.trade_bill(DAY, TradeBillType.SUCCESS)
    assert sorted(r.out_trade_no for r in success.rows) == ["v3c-bill-01", "v3c-bill-02"]
    flow = await client.fund_flow_bill(DAY, AccountType.BASIC, gzip=True)
    assert flow.summary.count == 3
    assert flow.rows[-1].balance_fen == 300
    with pytest.raises(ApiError) as none:
        await client.trade_bill(date(2025, 6, 29))
    assert none.value.code == "NO_STATEMENT_EXIST"
