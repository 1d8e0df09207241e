"""The simulator's ``bill_*`` faults over its HTTP control API: each makes the day's bill
disagree with its ledger in one way, and none of them changes an API answer."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import date

import httpx
import pytest

from scanpay.errors import ApiError
from scanpay.simulator import Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.bill import Bill
from scanpay.wechat.v2.bills import DownloadBill
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v3.refunds import RefundApplication
from tests.simulator.conftest import make_v3_client

from .kit import SHOP, make_simulator, make_v2, shanghai

D1 = date(2025, 3, 1)


@pytest.fixture
async def sim(credentials: tuple[MerchantCredentials, SimulatorKeys]) -> AsyncIterator[Simulator]:
    simulator = make_simulator(credentials, shanghai(D1, 12))
    yield simulator
    simulator.close()


async def order_paid_with(sim: Simulator, http: httpx.AsyncClient, number: str,
                          header: str = "") -> None:  # fmt: skip
    async with make_v2(sim) as v2:
        order = UnifiedOrder(out_trade_no=number, body="Tea", total_fee=1000,
                             notify_url=f"{SHOP}/notify/v2", product_id="tea")  # fmt: skip
        await v2.create_native_order(order)
    headers = {"X-Sim-Fault": header} if header else {}
    answer = await http.post("/sim/pay", json={"out_trade_no": number}, headers=headers)
    assert answer.status_code == 200, answer.text


async def bill(sim: Simulator) -> Bill:
    async with make_v2(sim) as v2:
        return await v2.download_bill(DownloadBill.for_day(D1))


async def test_each_bill_fault(sim: Simulator) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as http:
        await order_paid_with(sim, http, "bf-plain")
        await order_paid_with(sim, http, "bf-missing", "bill_missing")
        await order_paid_with(sim, http, "bf-amount", "bill_amount=25")
        await order_paid_with(sim, http, "bf-revoked", "bill_revoked")
        await order_paid_with(sim, http, "bf-refund", "bill_refund_amount=3")
        async with make_v3_client(sim) as v3:
            await v3.create_refund(
                RefundApplication(
                    out_refund_no="bf-refund-r", refund=400, total=1000, out_trade_no="bf-refund"
                )
            )
            sim.clock.advance(1)
            sim.refunds.settle()
            # the bill faults leave the API alone
            answer = await v3.query_by_out_trade_no("bf-amount")
            assert answer.total == 1000

        found = {(r.out_trade_no, r.trade_state): r for r in (await bill(sim)).rows}
        assert ("bf-missing", "SUCCESS") not in found
        assert found["bf-plain", "SUCCESS"].order_fen == 1000
        assert found["bf-amount", "SUCCESS"].order_fen == 1025
        assert found["bf-amount", "SUCCESS"].settlement_total_fen == 1025
        assert ("bf-revoked", "REVOKED") in found
        assert found["bf-refund", "SUCCESS"].order_fen == 1000  # the payment row is right
        assert found["bf-refund", "REFUND"].refund_fen == 403

        set_extra = await http.post("/sim/faults", json={"faults": {"bill_extra": 2}})
        assert set_extra.status_code == 200
        strangers = [r for r in (await bill(sim)).rows if r.out_trade_no.startswith("simextra")]
        assert [r.order_fen for r in strangers] == [100, 200]
        async with make_v3_client(sim) as v3:
            assert (await v3.query_by_out_trade_no("bf-plain")).total == 1000

        await http.post("/sim/faults", json={"faults": {"bill_not_ready": 1}})
        with pytest.raises(ApiError) as v2_error:
            await bill(sim)
        assert v2_error.value.message == "Bill Creating"
        async with make_v3_client(sim) as v3:
            with pytest.raises(ApiError) as v3_error:
                await v3.trade_bill_to(D1, io.BytesIO())
        assert v3_error.value.code == "STATEMENT_CREATING"
        await http.delete("/sim/faults")
        clean = (await bill(sim)).rows  # every fault cleared: the bill is the ledger again
        seen = sorted((r.out_trade_no, r.trade_state, r.order_fen or r.refund_fen) for r in clean)
        assert seen == [
            ("bf-amount", "SUCCESS", 1000), ("bf-missing", "SUCCESS", 1000),
            ("bf-plain", "SUCCESS", 1000), ("bf-refund", "REFUND", 400),
            ("bf-refund", "SUCCESS", 1000), ("bf-revoked", "SUCCESS", 1000),
        ]  # fmt: skip
