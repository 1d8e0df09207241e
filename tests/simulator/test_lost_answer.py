"""Answers that do not reach the merchant. ``lost_answer``: WeChat carries the call out but the
answer is lost (a bare 504); the order or refund exists at the simulator, and repeating the
same request answers what was made the first time. ``slow``: a client whose timeout is shorter
than the wait gives up."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from scanpay.client.retry import NO_RETRY
from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.errors import ApiError, RetryableApiError, TransportError
from scanpay.simulator import Simulator
from scanpay.simulator.faults import parse_fault
from scanpay.wechat.keys import TrustStore, load_public_key
from scanpay.wechat.states import TradeState
from scanpay.wechat.v3.refunds import RefundApplication

from .conftest import order
from .live import READY_WAIT_SECONDS, serve_simulator
from .test_faults_api import set_faults, v2_client, v3
from .test_v3_flow import native


class WithFault(httpx.AsyncBaseTransport):
    """Adds an ``X-Sim-Fault`` header to every request (a per-request fault)."""

    def __init__(self, app: httpx.ASGITransport, fault: str) -> None:
        self.inner = app
        self.fault = fault

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["X-Sim-Fault"] = self.fault
        return await self.inner.handle_async_request(request)


async def test_v3_prepay_carried_out_answer_lost(sim: Simulator, raw: httpx.AsyncClient) -> None:
    await set_faults(raw, {"lost_answer": {"value": 1, "times": 1}})
    async with v3(sim) as client:
        with pytest.raises(RetryableApiError) as caught:
            await client.create_native_order(native(sim))
        assert (caught.value.http_status, caught.value.code) == (504, "HTTP_504")
        [made] = sim.ledger.orders()  # WeChat has the order
        assert made.out_trade_no == "v3-order-01"
        # the merchant asks again with the same request: the same code_url
        assert await client.create_native_order(native(sim)) == made.code_url
        unpaid = await client.query_by_out_trade_no("v3-order-01")
        assert unpaid.trade_state is TradeState.NOTPAY
    events = (await raw.get("/sim/faults")).json()["events"]
    assert [e["fault"] for e in events] == ["lost_answer"]


async def test_v2_prepay_answer_lost_per_request(sim: Simulator) -> None:
    lossy = V2Client(
        sim.credentials.v2_merchant(),
        base_url="http://sim.test",
        transport=WithFault(httpx.ASGITransport(app=sim.app), "lost_answer"),
    )
    async with lossy:
        with pytest.raises(TransportError):
            await lossy.create_native_order(order("lost-v2"))
    [made] = sim.ledger.orders()
    async with v2_client(sim) as client:
        again = await client.create_native_order(order("lost-v2"))
        assert again.code_url == made.code_url
        queried = await client.query_order(out_trade_no="lost-v2")
        assert queried.trade_state is TradeState.NOTPAY


async def test_v3_refund_carried_out_answer_lost(sim: Simulator) -> None:
    async with v3(sim) as client:
        code_url = await client.create_native_order(native(sim, total=1000))
        await sim.pay(code_url=code_url)
        application = RefundApplication(
            out_refund_no="lost-refund-1", refund=300, total=1000, out_trade_no="v3-order-01"
        )
        # the next call only
        sim.faults.set([parse_fault("lost_answer=1:1")], now=sim.clock.timestamp())
        with pytest.raises(RetryableApiError):
            await client.create_refund(application)
        first = await client.query_refund("lost-refund-1")  # WeChat made the refund
        again = await client.create_refund(application)  # same number: the same refund
        assert again.refund_id == first.refund_id
        assert again.refund == 300
        # nothing was refunded twice: 700 fen are left, 701 are refused
        with pytest.raises(ApiError) as over:
            await client.create_refund(
                RefundApplication(
                    out_refund_no="lost-refund-2",
                    refund=701,
                    total=1000,
                    out_trade_no="v3-order-01",
                )
            )
        assert over.value.code == "INVALID_REQUEST"


def test_slow_answer_meets_a_client_timeout() -> None:
    """``slow`` over a real socket: a client with a shorter timeout gives up (TransportError);
    WeChat still carries the call out once the wait is over."""
    with serve_simulator() as (live, base_url):
        creds = live.credentials
        trust = TrustStore()
        trust.add_public_key(
            creds.wechatpay_public_key_id, load_public_key(creds.wechatpay_public_key_pem)
        )
        live.faults.set([parse_fault("slow=2:1")], now=live.clock.timestamp())

        async def call() -> None:
            async with V3Client(
                creds.mchid,
                creds.merchant_serial_no,
                creds.merchant_private_key_pem.reveal(),
                creds.api_v3_key,
                trust,
                base_url=base_url,
                timeout=0.3,
                retry=NO_RETRY,
            ) as client:
                with pytest.raises(TransportError):
                    await client.create_native_order(native(live, "slow-order-1"))

        asyncio.run(call())
        deadline = time.monotonic() + READY_WAIT_SECONDS
        while live.ledger.order("slow-order-1") is None:  # carried out after the wait
            assert time.monotonic() < deadline, "the slow call was never carried out"
            time.sleep(0.05)
        assert [e["fault"] for e in live.faults.snapshot()["events"]] == ["slow"]
