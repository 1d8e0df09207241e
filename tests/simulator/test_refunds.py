"""Refunds in the simulator (v2 and v3) on a frozen clock: WeChat's rules (partial, several,
over-refund, idempotent numbers, unpaid orders, unknown refunds), PROCESSING -> SUCCESS on the
simulator clock, the order turning REFUND, and refund notifications delivered and retried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.errors import ApiError
from scanpay.simulator import RETRY_DELAYS, SimClock, Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import RefundState, SignType, TradeState
from scanpay.wechat.v2.envelope import V2Merchant
from scanpay.wechat.v2.notify import ACK_SUCCESS, ack_failure
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v2.refunds import RefundQuery, RefundRequest, RefundStatus
from scanpay.wechat.v3.notify import RefundNotice
from scanpay.wechat.v3.refunds import RefundApplication
from scanpay.wechat.v3.transactions import NativeOrder

from .conftest import START, make_v3_client

SHOP = "http://shop.test"


class Shop:
    """The merchant's notify URLs: records (path, headers, body); fails ``failures`` times."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.failures = 0
        paths = ["/notify/v2", "/refund/v2", "/notify/v3", "/refund/v3"]
        self.app = Starlette(routes=[Route(p, self.handle, methods=["POST"]) for p in paths])

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        self.received.append((path, dict(request.headers), await request.body()))
        v2 = path.endswith("/v2")
        if self.failures > 0:
            self.failures -= 1
            return Response(ack_failure("busy"), 200) if v2 else Response(b"{}", 500)
        return Response(ACK_SUCCESS, media_type="text/xml") if v2 else Response(status_code=204)

    def bodies(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for p, h, b in self.received if p == path]


@pytest.fixture
def shop() -> Shop:
    return Shop()


@pytest.fixture
async def rsim(
    clock: SimClock, shop: Shop, credentials: tuple[MerchantCredentials, SimulatorKeys]
) -> AsyncIterator[Simulator]:
    simulator = Simulator.create(
        clock=clock, notify_transport=httpx.ASGITransport(app=shop.app), credentials=credentials
    )
    async with simulator:
        yield simulator
    simulator.close()


@pytest.fixture
async def v2(rsim: Simulator) -> AsyncIterator[V2Client]:
    async with V2Client(
        rsim.credentials.v2_merchant(SignType.HMAC_SHA256),
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=rsim.app),
    ) as client:
        yield client


@pytest.fixture
async def v3(rsim: Simulator) -> AsyncIterator[V3Client]:
    async with make_v3_client(rsim) as client:
        yield client


async def paid_v2_order(sim: Simulator, v2: V2Client, number: str, total: int = 1000) -> str:
    order = UnifiedOrder(
        out_trade_no=number, body="Tea", total_fee=total, notify_url=f"{SHOP}/notify/v2",
        product_id="tea",
    )  # fmt: skip
    created = await v2.create_native_order(order)
    return (await sim.pay(code_url=created.code_url)).transaction_id


async def paid_v3_order(sim: Simulator, v3: V3Client, number: str, total: int = 1000) -> str:
    code_url = await v3.create_native_order(
        NativeOrder(
            appid=sim.credentials.appid,
            mchid=sim.credentials.mchid,
            description="Tea",
            out_trade_no=number,
            notify_url=f"{SHOP}/notify/v3",
            total=total,
        )
    )
    return (await sim.pay(code_url=code_url)).transaction_id


def v2_refund(number: str, out_refund_no: str, refund: int, total: int = 1000) -> RefundRequest:
    return RefundRequest(
        out_trade_no=number, out_refund_no=out_refund_no, total_fee=total, refund_fee=refund,
        notify_url=f"{SHOP}/refund/v2",
    )  # fmt: skip


def v3_refund(number: str, out_refund_no: str, refund: int, total: int = 1000) -> RefundApplication:
    return RefundApplication(
        out_refund_no=out_refund_no, refund=refund, total=total, out_trade_no=number,
        notify_url=f"{SHOP}/refund/v3",
    )  # fmt: skip


async def test_v2_partial_refunds_settle_and_notify(
    rsim: Simulator, v2: V2Client, shop: Shop
) -> None:
    transaction_id = await paid_v2_order(rsim, v2, "rf-v2-1")
    first = await v2.refund(v2_refund("rf-v2-1", "rf-v2-1-a", 300))
    assert (first.refund_fee, first.total_fee, first.transaction_id) == (300, 1000, transaction_id)
    assert first.refund_id.startswith("50")
    assert len(first.refund_id) == 29

    pending = await v2.query_refund(RefundQuery(out_refund_no="rf-v2-1-a"))
    assert [r.refund_status for r in pending.refunds] == [RefundStatus.PROCESSING]
    assert (await v2.query_order(out_trade_no="rf-v2-1")).trade_state is TradeState.SUCCESS

    rsim.clock.advance(1)
    await rsim.deliver_due_notifications()
    done = await v2.query_refund(RefundQuery(refund_id=first.refund_id))
    [item] = done.refunds
    assert item.refund_status is RefundStatus.SUCCESS
    assert item.refund_success_time == "2025-03-01 10:00:01"  # Beijing
    assert (await v2.query_order(out_trade_no="rf-v2-1")).trade_state is TradeState.REFUND

    [(_, body)] = shop.bodies("/refund/v2")
    assert b"<sign>" not in body
    note = v2.decrypt_refund_notification(body)
    assert (note.out_refund_no, note.refund_fee, note.refund_status) == (
        "rf-v2-1-a", 300, RefundStatus.SUCCESS,
    )  # fmt: skip
    assert note.success_time == "2025-03-01 10:00:01"

    second = await v2.refund(v2_refund("rf-v2-1", "rf-v2-1-b", 700))
    everything = await v2.query_refund(RefundQuery(out_trade_no="rf-v2-1"))
    assert [(r.out_refund_no, r.refund_fee) for r in everything.refunds] == [
        ("rf-v2-1-a", 300), ("rf-v2-1-b", 700),
    ]  # fmt: skip
    assert everything.refunds[1].refund_id == second.refund_id
    by_transaction = await v2.query_refund(RefundQuery(transaction_id=transaction_id))
    assert len(by_transaction.refunds) == 2
    with pytest.raises(ApiError) as over:
        await v2.refund(v2_refund("rf-v2-1", "rf-v2-1-c", 1))
    assert over.value.code == "INVALID_REQUEST"


async def test_v2_refund_rules(rsim: Simulator, v2: V2Client) -> None:
    await paid_v2_order(rsim, v2, "rf-v2-2")

    async def refused(request: RefundRequest) -> str:
        with pytest.raises(ApiError) as caught:
            await v2.refund(request)
        return caught.value.code

    assert await refused(v2_refund("rf-v2-2", "x-1", 1001, total=1001)) == "INVALID_REQUEST"
    assert await refused(v2_refund("rf-v2-2", "x-1", 1, total=999)) == "INVALID_REQUEST"
    assert await refused(v2_refund("no-such-order", "x-1", 1)) == "ORDERNOTEXIST"

    first = await v2.refund(v2_refund("rf-v2-2", "x-2", 400))
    again = await v2.refund(v2_refund("rf-v2-2", "x-2", 400))
    assert again.refund_id == first.refund_id
    assert await refused(v2_refund("rf-v2-2", "x-2", 401)) == "INVALID_REQUEST"
    assert await refused(v2_refund("rf-v2-2", "x-3", 601)) == "INVALID_REQUEST"
    assert len(rsim.refunds.of_order("rf-v2-2")) == 1

    unpaid = UnifiedOrder(
        out_trade_no="rf-v2-unpaid", body="Tea", total_fee=1000,
        notify_url=f"{SHOP}/notify/v2", product_id="tea",
    )  # fmt: skip
    await v2.create_native_order(unpaid)
    assert await refused(v2_refund("rf-v2-unpaid", "x-4", 1)) == "INVALID_REQUEST"

    with pytest.raises(ApiError) as missing:
        await v2.query_refund(RefundQuery(out_refund_no="never-made"))
    assert missing.value.code == "REFUNDNOTEXIST"
    with pytest.raises(ApiError) as none_yet:
        await v2.query_refund(RefundQuery(out_trade_no="rf-v2-unpaid"))
    assert none_yet.value.code == "REFUNDNOTEXIST"


async def test_v2_refund_needs_a_valid_signature(rsim: Simulator) -> None:
    stranger = V2Client(
        V2Merchant(
            appid=rsim.credentials.appid, mch_id=rsim.credentials.mchid, key=Secret("k" * 32)
        ),
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=rsim.app),
    )  # fmt: skip
    async with stranger:
        with pytest.raises(ApiError) as caught:
            await stranger.refund(v2_refund("whatever", "x-1", 1))
    assert caught.value.code == "SIGNERROR"


async def test_v2_refund_query_pages_with_offset(rsim: Simulator, v2: V2Client) -> None:
    await paid_v2_order(rsim, v2, "rf-v2-many", total=2000)
    for n in range(12):
        await v2.refund(v2_refund("rf-v2-many", f"many-{n:02d}", 10, total=2000))
    page = await v2.query_refund(RefundQuery(out_trade_no="rf-v2-many", offset=10))
    assert page.total_refund_count == 12
    assert [r.out_refund_no for r in page.refunds] == ["many-10", "many-11"]


async def test_v2_refund_notification_is_retried_on_the_schedule(
    rsim: Simulator, v2: V2Client, shop: Shop
) -> None:
    await paid_v2_order(rsim, v2, "rf-v2-3")
    await rsim.deliver_due_notifications()  # the payment notification
    shop.failures = 2
    await v2.refund(v2_refund("rf-v2-3", "rf-v2-3-a", 1000))
    rsim.clock.advance(1)
    await rsim.deliver_due_notifications()
    for delay in RETRY_DELAYS[:2]:
        rsim.clock.advance(delay)
        await rsim.deliver_due_notifications()
    assert len(shop.bodies("/refund/v2")) == 3
    [log] = [n for n in rsim.notification_log() if n["kind"] == "refund_v2"]
    assert log["status"] == "delivered"
    assert [a["offset_seconds"] for a in log["attempts"]] == [0, 15, 30]


async def test_v3_refunds_settle_and_notify(rsim: Simulator, v3: V3Client, shop: Shop) -> None:
    transaction_id = await paid_v3_order(rsim, v3, "rf-v3-1")
    created = await v3.create_refund(v3_refund("rf-v3-1", "rf-v3-1-a", 250))
    assert created.status is RefundState.PROCESSING
    assert (created.refund, created.total, created.transaction_id) == (250, 1000, transaction_id)
    assert created.success_time is None
    assert (await v3.query_refund("rf-v3-1-a")).status is RefundState.PROCESSING

    rsim.clock.advance(1)
    await rsim.deliver_due_notifications()
    done = await v3.query_refund("rf-v3-1-a")
    assert done.status is RefundState.SUCCESS
    assert done.success_time is not None
    assert (await v3.query_by_out_trade_no("rf-v3-1")).trade_state is TradeState.REFUND

    [(headers, body)] = shop.bodies("/refund/v3")
    assert headers["wechatpay-serial"] == rsim.credentials.wechatpay_public_key_id
    notice = await v3.verify_notification(headers, body)
    assert isinstance(notice, RefundNotice)
    assert notice.envelope.event_type == "REFUND.SUCCESS"
    assert (notice.refund.out_refund_no, notice.refund.refund) == ("rf-v3-1-a", 250)
    assert notice.refund.status is RefundState.SUCCESS

    again = await v3.create_refund(v3_refund("rf-v3-1", "rf-v3-1-a", 250))
    assert (again.refund_id, again.status) == (created.refund_id, RefundState.SUCCESS)
    by_id = await v3.create_refund(
        RefundApplication(
            out_refund_no="rf-v3-1-b", refund=750, total=1000, transaction_id=transaction_id
        )
    )
    assert by_id.out_trade_no == "rf-v3-1"


async def test_v3_refund_errors(rsim: Simulator, v3: V3Client) -> None:
    await paid_v3_order(rsim, v3, "rf-v3-2")

    async def refused(application: RefundApplication) -> tuple[int | None, str]:
        with pytest.raises(ApiError) as caught:
            await v3.create_refund(application)
        return caught.value.http_status, caught.value.code

    await v3.create_refund(v3_refund("rf-v3-2", "y-1", 600))
    assert await refused(v3_refund("rf-v3-2", "y-2", 401)) == (400, "INVALID_REQUEST")
    assert await refused(v3_refund("rf-v3-2", "y-1", 601)) == (400, "INVALID_REQUEST")
    assert await refused(v3_refund("rf-v3-2", "y-3", 1, total=999)) == (400, "INVALID_REQUEST")
    assert await refused(v3_refund("nothing-here", "y-4", 1)) == (404, "RESOURCE_NOT_EXISTS")
    with pytest.raises(ApiError) as missing:
        await v3.query_refund("never-made")
    assert (missing.value.http_status, missing.value.code) == (404, "RESOURCE_NOT_EXISTS")

    await v3.create_native_order(
        NativeOrder(
            appid=rsim.credentials.appid,
            mchid=rsim.credentials.mchid,
            description="Tea",
            out_trade_no="rf-v3-unpaid",
            notify_url=f"{SHOP}/notify/v3",
            total=1000,
        )
    )
    assert await refused(v3_refund("rf-v3-unpaid", "y-5", 1)) == (400, "INVALID_REQUEST")


async def test_refund_without_notify_url_sends_nothing(
    rsim: Simulator, v2: V2Client, shop: Shop
) -> None:
    await paid_v2_order(rsim, v2, "rf-quiet")
    await v2.refund(
        RefundRequest(out_trade_no="rf-quiet", out_refund_no="q-1", total_fee=1000, refund_fee=5)
    )
    rsim.clock.advance(5)
    await rsim.deliver_due_notifications()
    assert rsim.refunds.get("q-1") is not None
    assert rsim.refunds.get("q-1").status is RefundState.SUCCESS  # type: ignore[union-attr]
    assert shop.bodies("/refund/v2") == []


async def test_refunds_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = Simulator.create(state, clock=SimClock(start=START))
    async with V2Client(
        first.credentials.v2_merchant(), base_url="http://sim.test",
        transport=httpx.ASGITransport(app=first.app),
    ) as client:  # fmt: skip
        await paid_v2_order(first, client, "rf-keep")
        await client.refund(v2_refund("rf-keep", "keep-1", 100))
    first.close()
    second = Simulator.create(state)
    kept = second.refunds.get("keep-1")
    second.close()
    assert kept is not None
    assert kept.refund_fee == 100


async def test_a_refunded_order_is_still_paid(rsim: Simulator, v2: V2Client, v3: V3Client) -> None:
    order = UnifiedOrder(
        out_trade_no="rf-again-v2", body="Tea", total_fee=1000,
        notify_url=f"{SHOP}/notify/v2", product_id="tea",
    )  # fmt: skip
    rsim_code = (await v2.create_native_order(order)).code_url
    await rsim.pay(code_url=rsim_code)
    await v2.refund(v2_refund("rf-again-v2", "again-1", 10))
    rsim.clock.advance(1)
    await rsim.deliver_due_notifications()
    with pytest.raises(ApiError) as v2_again:
        await v2.create_native_order(order)
    assert v2_again.value.code == "ORDERPAID"

    await paid_v3_order(rsim, v3, "rf-again-v3")
    await v3.create_refund(v3_refund("rf-again-v3", "again-2", 10))
    rsim.clock.advance(1)
    await rsim.deliver_due_notifications()
    with pytest.raises(ApiError) as v3_again:
        await paid_v3_order(rsim, v3, "rf-again-v3")
    assert (v3_again.value.http_status, v3_again.value.code) == (403, "TRADE_ERROR")
