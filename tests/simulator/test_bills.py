"""Bills built from the simulator's ledger on a frozen clock: which rows land on which Beijing
day, totals, bill types, gzip, 'No Bill Exist', and the v3 descriptor / download rules
(hash over the text, a signed descriptor, an unsigned file that still needs Authorization)."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest

from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.errors import ApiError
from scanpay.simulator import SimClock, Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.bill import parse_bill
from scanpay.wechat.v2.bills import BillType, DownloadBill
from scanpay.wechat.v2.envelope import encode_request
from scanpay.wechat.v3.bills import (
    AccountType,
    BillDescriptor,
    TradeBillType,
    bill_download_request,
    parse_bill_descriptor,
    trade_bill_request,
)

from .conftest import make_v3_client
from .test_refunds import paid_v2_order, paid_v3_order, v2_refund, v3_refund

DAY = date(2025, 3, 1)  # the conftest clock starts at 10:00 Beijing on this day


@pytest.fixture
async def bsim(
    clock: SimClock, credentials: tuple[MerchantCredentials, SimulatorKeys]
) -> AsyncIterator[Simulator]:
    async def ack(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    simulator = Simulator.create(
        clock=clock,
        notify_transport=httpx.MockTransport(ack),
        credentials=credentials,
        public_url="http://sim.test",
    )
    async with simulator:
        yield simulator
    simulator.close()


@pytest.fixture
async def v2(bsim: Simulator) -> AsyncIterator[V2Client]:
    async with V2Client(
        bsim.credentials.v2_merchant(),
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=bsim.app),
    ) as client:
        yield client


@pytest.fixture
async def v3(bsim: Simulator) -> AsyncIterator[V3Client]:
    async with make_v3_client(bsim) as client:
        yield client


async def day_of_trades(sim: Simulator, v2: V2Client) -> None:
    """Two payments and one refund today, one payment after Beijing midnight."""
    await paid_v2_order(sim, v2, "bill-1", total=1000)
    await paid_v2_order(sim, v2, "bill-2", total=250)
    await v2.refund(v2_refund("bill-1", "bill-1-r", 400))
    sim.clock.advance(1)
    await sim.deliver_due_notifications()
    sim.clock.advance(14 * 3600)  # 00:00:01 Beijing, the next day
    await paid_v2_order(sim, v2, "bill-3", total=99)


async def test_v2_trade_bill_of_a_day(bsim: Simulator, v2: V2Client) -> None:
    await day_of_trades(bsim, v2)
    bill = await v2.download_bill(DownloadBill.for_day(DAY))
    assert [(r.out_trade_no, r.trade_state) for r in bill.rows] == [
        ("bill-1", "SUCCESS"), ("bill-2", "SUCCESS"), ("bill-1", "REFUND"),
    ]  # fmt: skip
    refund_row = bill.rows[2]
    assert (refund_row.out_refund_no, refund_row.refund_fen) == ("bill-1-r", 400)
    assert refund_row.refund_id == bsim.refunds.get("bill-1-r").refund_id  # type: ignore[union-attr]
    assert bill.rows[0].trade_time.startswith("2025-03-01 10:00:00")
    assert bill.rows[0].appid == bsim.credentials.appid
    assert bill.rows[0].fee_fen == 6  # 0.60% of 10.00 yuan
    assert bill.summary.trade_count == 3
    assert bill.summary.settlement_total_fen == 1250
    assert bill.summary.refund_total_fen == 400

    success = await v2.download_bill(DownloadBill.for_day(DAY, BillType.SUCCESS, gzip=True))
    assert [r.out_trade_no for r in success.rows] == ["bill-1", "bill-2"]
    refunds = await v2.download_bill(DownloadBill.for_day(DAY, BillType.REFUND))
    assert [r.out_refund_no for r in refunds.rows] == ["bill-1-r"]
    next_day = await v2.download_bill(DownloadBill.for_day(date(2025, 3, 2)))
    assert [r.out_trade_no for r in next_day.rows] == ["bill-3"]


async def test_v2_bill_answers_are_raw_text_or_gzip(bsim: Simulator, v2: V2Client) -> None:
    await day_of_trades(bsim, v2)
    merchant = bsim.credentials.v2_merchant()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bsim.app), base_url="http://sim.test"
    ) as http:
        plain = await http.post(
            "/pay/downloadbill",
            content=encode_request(DownloadBill.for_day(DAY).to_fields(), merchant, nonce="n1"),
        )
        packed = await http.post(
            "/pay/downloadbill",
            content=encode_request(
                DownloadBill.for_day(DAY, gzip=True).to_fields(), merchant, nonce="n2"
            ),
        )
    assert plain.text.startswith("交易时间,公众账号ID,商户号")
    assert "`bill-1" in plain.text
    assert gzip.decompress(packed.content).decode() == plain.text
    assert parse_bill(plain.text).summary.trade_count == 3


async def test_v2_no_bill(bsim: Simulator, v2: V2Client) -> None:
    with pytest.raises(ApiError) as empty:
        await v2.download_bill(DownloadBill.for_day(DAY))
    assert (empty.value.code, empty.value.message) == ("20002", "No Bill Exist")
    with pytest.raises(ApiError) as future:
        await v2.download_bill(DownloadBill.for_day(date(2025, 3, 9)))
    assert future.value.message == "invalid bill_date"


async def test_v3_trade_bill(bsim: Simulator, v3: V3Client) -> None:
    await paid_v3_order(bsim, v3, "bill-v3-1", total=800)
    await v3.create_refund(v3_refund("bill-v3-1", "bill-v3-1-r", 300, total=800))
    bsim.clock.advance(2)
    await bsim.deliver_due_notifications()
    for packed in (False, True):
        bill = await v3.trade_bill(DAY, gzip=packed)
        assert [(r.out_trade_no, r.trade_state) for r in bill.rows] == [
            ("bill-v3-1", "SUCCESS"), ("bill-v3-1", "REFUND"),
        ]  # fmt: skip
    refunds = await v3.trade_bill(DAY, TradeBillType.REFUND)
    assert [r.refund_fen for r in refunds.rows] == [300]
    with pytest.raises(ApiError) as none:
        await v3.trade_bill(date(2025, 2, 28))
    assert (none.value.http_status, none.value.code) == (400, "NO_STATEMENT_EXIST")


async def test_v3_fund_flow_bill(bsim: Simulator, v3: V3Client) -> None:
    await paid_v3_order(bsim, v3, "flow-0001", total=800)
    await paid_v3_order(bsim, v3, "flow-0002", total=200)
    await v3.create_refund(v3_refund("flow-0001", "flow-0001-r", 300, total=800))
    bsim.clock.advance(2)
    await bsim.deliver_due_notifications()
    flow = await v3.fund_flow_bill(DAY, gzip=True)
    assert [(r.direction, r.amount_fen, r.balance_fen) for r in flow.rows] == [
        ("收入", 800, 800), ("收入", 200, 1000), ("支出", 300, 700),
    ]  # fmt: skip
    assert (flow.summary.income_fen, flow.summary.expense_fen) == (1000, 300)
    with pytest.raises(ApiError) as fees:
        await v3.fund_flow_bill(DAY, AccountType.FEES)
    assert fees.value.code == "NO_STATEMENT_EXIST"


async def test_v3_descriptor_and_download_rules(bsim: Simulator, v3: V3Client) -> None:
    await paid_v3_order(bsim, v3, "dl-00001", total=500)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bsim.app), base_url="http://sim.test"
    ) as http:
        answer = await v3.send(trade_bill_request(DAY, gzip=True))
        assert answer.headers["wechatpay-signature"]
        descriptor = json.loads(answer.content)
        assert descriptor["hash_type"] == "SHA1"
        assert descriptor["download_url"].startswith("http://sim.test/v3/billdownload/file?token=")

        parsed = parse_bill_descriptor(answer.content)
        file = await v3.send(bill_download_request(parsed))
        assert "wechatpay-signature" not in file.headers
        text = gzip.decompress(file.content)
        assert hashlib.sha1(text).hexdigest() == descriptor["hash_value"]

        unsigned = await http.get(descriptor["download_url"])
        assert unsigned.status_code == 401
        assert unsigned.json()["code"] == "SIGN_ERROR"
        stranger = BillDescriptor("http://sim.test/v3/billdownload/file?token=nope", "0" * 40)
        with pytest.raises(ApiError) as nowhere:
            await v3.send(bill_download_request(stranger))
        assert (nowhere.value.http_status, nowhere.value.code) == (404, "RESOURCE_NOT_EXISTS")


async def test_bills_follow_the_public_url(bsim: Simulator, v3: V3Client) -> None:
    await paid_v3_order(bsim, v3, "url-0001")
    bsim.public_url = "http://127.0.0.1:9999"
    answer = await v3.send(trade_bill_request(DAY))
    assert parse_bill_descriptor(answer.content).download_url.startswith(
        "http://127.0.0.1:9999/v3/billdownload/file?token="
    )
