"""V2Client refund, refund query and bill download against the simulator (in-process ASGI),
for both sign types; refund notifications decrypt with scanpay's own v2 functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest

from scanpay.client.v2 import ClientCertificate, V2Client
from scanpay.errors import ApiError, DecryptionError
from scanpay.simulator import SimClock, Simulator, generate_credentials
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v2.bills import BillType, DownloadBill
from scanpay.wechat.v2.envelope import V2Merchant
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v2.refund_notify import decrypt_refund_notification
from scanpay.wechat.v2.refunds import RefundQuery, RefundRequest, RefundStatus

START = datetime(2025, 6, 30, 15, 30, tzinfo=UTC)  # 23:30 Beijing
REFUND_URL = "http://shop.test/refund/v2"


@pytest.fixture(scope="module")
def credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    return generate_credentials()


class Inbox(httpx.AsyncBaseTransport):
    """The merchant's notify URLs: keeps every body, acknowledges as WeChat expects."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.setdefault(request.url.path, []).append(await request.aread())
        ack = b"<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>"
        return httpx.Response(200, content=ack)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def sim(
    credentials: tuple[MerchantCredentials, SimulatorKeys], inbox: Inbox
) -> AsyncIterator[Simulator]:
    simulator = Simulator.create(
        clock=SimClock(start=START), notify_transport=inbox, credentials=credentials
    )
    async with simulator:
        yield simulator
    simulator.close()


@pytest.fixture(params=[SignType.MD5, SignType.HMAC_SHA256], ids=["md5", "hmac"])
def sign_type(request: pytest.FixtureRequest) -> SignType:
    value: SignType = request.param
    return value


@pytest.fixture
async def client(sim: Simulator, sign_type: SignType) -> AsyncIterator[V2Client]:
    creds = sim.credentials
    cert = ClientCertificate(
        creds.merchant_certificate_pem.encode(), creds.merchant_private_key_pem.reveal().encode()
    )
    async with V2Client(
        creds.v2_merchant(sign_type),
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=sim.app),
        client_cert=cert,  # unused over the in-process transport: the simulator is plain HTTP
    ) as v2:
        yield v2


async def pay(sim: Simulator, client: V2Client, number: str, total: int) -> str:
    created = await client.create_native_order(
        UnifiedOrder(
            out_trade_no=number,
            body="Jasmine tea",
            total_fee=total,
            notify_url="http://shop.test/notify/v2",
            product_id="jasmine",
        )
    )
    return (await sim.pay(code_url=created.code_url)).transaction_id


async def test_refund_query_and_notification(
    sim: Simulator, client: V2Client, inbox: Inbox
) -> None:
    transaction_id = await pay(sim, client, "v2c-refund-01", 2000)
    accepted = await client.refund(
        RefundRequest(
            transaction_id=transaction_id,
            out_refund_no="v2c-r-01",
            total_fee=2000,
            refund_fee=1500,
            refund_desc="one cup returned",
            notify_url=REFUND_URL,
        )
    )
    assert accepted.out_trade_no == "v2c-refund-01"
    assert (accepted.refund_fee, accepted.cash_fee) == (1500, 2000)

    sim.clock.advance(1)
    await sim.deliver_due_notifications()
    queried = await client.query_refund(RefundQuery(out_refund_no="v2c-r-01"))
    assert queried.transaction_id == transaction_id
    [item] = queried.refunds
    assert (item.refund_id, item.refund_status) == (accepted.refund_id, RefundStatus.SUCCESS)
    assert item.refund_success_time == "2025-06-30 23:30:01"
    status = await client.query_order(out_trade_no="v2c-refund-01")
    assert status.trade_state is TradeState.REFUND

    [body] = inbox.bodies["/refund/v2"]
    via_client = client.decrypt_refund_notification(body)
    via_core = decrypt_refund_notification(body, sim.credentials.v2_merchant())
    assert via_client == via_core
    assert (via_core.refund_id, via_core.refund_fee, via_core.total_fee) == (
        accepted.refund_id,
        1500,
        2000,
    )
    assert via_core.refund_request_source == "API"
    wrong_key = V2Merchant(sim.credentials.appid, sim.credentials.mchid, Secret("z" * 32))
    with pytest.raises(DecryptionError):
        decrypt_refund_notification(body, wrong_key)

    with pytest.raises(ApiError) as over:
        await client.refund(
            RefundRequest(
                out_trade_no="v2c-refund-01",
                out_refund_no="v2c-r-02",
                total_fee=2000,
                refund_fee=501,
            )
        )
    assert over.value.code == "INVALID_REQUEST"


async def test_download_bill(sim: Simulator, client: V2Client) -> None:
    await pay(sim, client, "v2c-bill-01", 1234)
    await client.refund(
        RefundRequest(
            out_trade_no="v2c-bill-01", out_refund_no="v2c-bill-r1", total_fee=1234, refund_fee=34
        )
    )
    sim.clock.advance(1800)  # the refund settles after Beijing midnight: next day's bill
    await sim.deliver_due_notifications()
    paid_day = await client.download_bill(DownloadBill.for_day(date(2025, 6, 30), gzip=True))
    assert [(r.out_trade_no, r.order_fen) for r in paid_day.rows] == [("v2c-bill-01", 1234)]
    refund_day = await client.download_bill(DownloadBill.for_day(date(2025, 7, 1), BillType.REFUND))
    assert [(r.out_refund_no, r.refund_fen) for r in refund_day.rows] == [("v2c-bill-r1", 34)]
    assert refund_day.summary.refund_total_fen == 34
    with pytest.raises(ApiError) as missing:
        await client.download_bill(DownloadBill.for_day(date(2025, 6, 29)))
    assert missing.value.message == "No Bill Exist"
