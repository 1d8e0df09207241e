"""Notification faults: drop, duplicate, delay, reorder, bad signatures followed by good retries,
stale timestamps and unknown serials; every one shown through what a merchant receives and
what scanpay's own verifiers make of it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.errors import SignatureError, StaleMessageError, UnknownKeyError
from scanpay.simulator import SimClock, Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.simulator.faults import Fault, Faults, FaultSpec, Scope, parse_fault
from scanpay.wechat.states import TradeState
from scanpay.wechat.v2.notify import ACK_SUCCESS, ack_failure, verify_payment_notification
from scanpay.wechat.v3.notify import PaymentNotice
from scanpay.wechat.v3.verify import PROBE_PREFIX

from .conftest import Receiver, V3Receiver, order
from .test_v3_flow import native, v3_client


def switch_on(sim: Simulator, *texts: str, seed: int | None = 1) -> None:
    sim.faults.seed(seed)
    sim.faults.set([parse_fault(t) for t in texts], now=sim.clock.timestamp())


async def pay_orders(sim: Simulator, client: V2Client, count: int) -> list[str]:
    numbers = [f"order-{i:04d}" for i in range(count)]
    for number in numbers:
        await client.create_native_order(order(number))
        await sim.pay(out_trade_no=number)
    return numbers


def delivered_numbers(receiver: Receiver) -> list[str]:
    return [
        body.split(b"<out_trade_no><![CDATA[")[1].split(b"]]>")[0].decode()
        for body in receiver.bodies
    ]


async def test_drop_all_notifications_query_still_shows_success(
    sim: Simulator, client: V2Client, receiver: Receiver, clock: SimClock
) -> None:
    switch_on(sim, "drop_notifications=1")
    numbers = await pay_orders(sim, client, 3)
    await sim.deliver_due_notifications()
    for _ in range(20):  # more than the whole 24h4m schedule: nothing is ever retried
        clock.advance(6 * 3600)
        await sim.deliver_due_notifications()
    assert receiver.bodies == []
    log = sim.notification_log()
    assert [n["status"] for n in log] == ["dropped"] * 3
    assert "drop_notifications" in log[0]["attempts"][0]["error"]
    for number in numbers:
        assert (await client.query_order(out_trade_no=number)).trade_state is TradeState.SUCCESS


async def test_drop_probability_is_seeded(
    sim: Simulator, client: V2Client, receiver: Receiver
) -> None:
    switch_on(sim, "drop_notifications=0.5", seed=42)
    numbers = await pay_orders(sim, client, 16)
    await sim.deliver_due_notifications()
    delivered = set(delivered_numbers(receiver))
    dropped = {n["out_trade_no"] for n in sim.notification_log() if n["status"] == "dropped"}
    assert delivered
    assert dropped
    assert delivered | dropped == set(numbers)
    assert not delivered & dropped
    # the same seed draws the same way
    again, twice = Faults(seed=42), Faults(seed=42)
    spec = [FaultSpec(Fault.DROP_NOTIFICATIONS, 0.5)]
    again.set(spec, now=0)
    twice.set(spec, now=0)
    draws = [bool(again.fire(Scope.NOTIFICATIONS)) for _ in range(30)]
    assert draws == [bool(twice.fire(Scope.NOTIFICATIONS)) for _ in range(30)]


async def test_duplicates_reach_the_receiver(
    sim: Simulator, client: V2Client, receiver: Receiver
) -> None:
    switch_on(sim, "duplicate_notifications=3")
    await pay_orders(sim, client, 1)
    await sim.deliver_due_notifications()
    assert len(receiver.bodies) == 3
    assert len(set(receiver.bodies)) == 1
    [note] = sim.notification_log()
    assert note["status"] == "delivered"
    assert len(note["attempts"]) == 1


async def test_reorder_delivers_in_another_order(
    sim: Simulator, client: V2Client, receiver: Receiver
) -> None:
    numbers = await pay_orders(sim, client, 10)
    switch_on(sim, "reorder_notifications", seed=3)
    await sim.deliver_due_notifications()
    arrived = delivered_numbers(receiver)
    assert sorted(arrived) == numbers
    assert arrived != numbers


async def test_flaky_scenario_drops_and_triplicates_in_random_order(
    sim: Simulator, client: V2Client, receiver: Receiver, raw: httpx.AsyncClient
) -> None:
    answer = await raw.post("/sim/faults", json={"scenario": "flaky_notifications", "seed": 5})
    assert set(answer.json()["faults"]) == {
        "drop_notifications",
        "duplicate_notifications",
        "reorder_notifications",
    }
    numbers = await pay_orders(sim, client, 20)
    await sim.deliver_due_notifications()
    arrived = delivered_numbers(receiver)
    dropped = [n["out_trade_no"] for n in sim.notification_log() if n["status"] == "dropped"]
    assert 0 < len(dropped) < 20
    assert sorted(set(arrived) | set(dropped)) == numbers
    assert all(arrived.count(number) == 3 for number in set(arrived))
    assert arrived != sorted(arrived)


async def test_delay_holds_the_first_attempt_on_the_sim_clock(
    sim: Simulator, client: V2Client, receiver: Receiver, clock: SimClock
) -> None:
    switch_on(sim, "delay_notifications=120")
    await pay_orders(sim, client, 1)
    assert await sim.deliver_due_notifications() == 1  # looked at, and put off
    assert receiver.bodies == []
    clock.advance(119)
    assert await sim.deliver_due_notifications() == 0
    clock.advance(1)
    await sim.deliver_due_notifications()
    assert len(receiver.bodies) == 1
    [note] = sim.notification_log()
    assert note["attempts"][0]["offset_seconds"] == 120


class VerifyingReceiver:
    """A v2 notify_url that checks the signature with scanpay's verifier."""

    def __init__(self, creds: MerchantCredentials) -> None:
        self.key = creds.api_v2_key
        self.outcomes: list[str] = []
        self.app = Starlette(routes=[Route("/notify/v2", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        try:
            verify_payment_notification(await request.body(), self.key)
        except SignatureError:
            self.outcomes.append("rejected")
            return Response(ack_failure("bad signature"), media_type="text/xml")
        self.outcomes.append("accepted")
        return Response(ACK_SUCCESS, media_type="text/xml")


@pytest.mark.parametrize("fault", ["bad_signature", "garbage_signature"])
async def test_v2_bad_signature_then_a_good_retry(
    clock: SimClock, credentials: tuple[MerchantCredentials, SimulatorKeys], fault: str
) -> None:
    merchant = VerifyingReceiver(credentials[0])
    sim = Simulator.create(
        clock=clock, credentials=credentials, notify_transport=httpx.ASGITransport(merchant.app)
    )
    async with sim:
        switch_on(sim, fault)
        async with V2Client(
            sim.credentials.v2_merchant(),
            base_url="http://sim.test",
            transport=httpx.ASGITransport(app=sim.app),
        ) as client:
            await pay_orders(sim, client, 1)
        await sim.deliver_due_notifications()
        clock.advance(15)
        await sim.deliver_due_notifications()
    [note] = sim.notification_log()
    sim.close()
    assert merchant.outcomes == ["rejected", "accepted"]
    assert [a["acknowledged"] for a in note["attempts"]] == [False, True]
    assert note["status"] == "delivered"


# --- API v3 notifications ----------------------------------------------------------------


async def paid_v3(sim: Simulator, client: V3Client, number: str = "v3-order-01") -> None:
    await client.create_native_order(native(sim, number))
    await sim.pay(out_trade_no=number)
    await sim.deliver_due_notifications()


class VerifyingV3Receiver(V3Receiver):
    """Answers 401 when scanpay's V3Client does not accept the notification."""

    client: V3Client | None = None

    async def handle(self, request: Request) -> Response:
        headers, body = dict(request.headers), await request.body()
        self.received.append((headers, body))
        assert self.client is not None
        try:
            await self.client.verify_notification(headers, body)
        except SignatureError:
            return Response(b'{"code":"FAIL","message":"bad signature"}', status_code=401)
        return Response(status_code=204)


@pytest.mark.parametrize("fault", ["bad_signature", "garbage_signature"])
async def test_v3_probe_signature_then_a_good_retry(
    clock: SimClock, credentials: tuple[MerchantCredentials, SimulatorKeys], fault: str
) -> None:
    receiver = VerifyingV3Receiver()
    sim = Simulator.create(
        clock=clock, credentials=credentials, notify_transport=httpx.ASGITransport(receiver.app)
    )
    async with sim, v3_client(sim, public_key_mode=True) as client:
        receiver.client = client
        await client.create_native_order(native(sim))
        switch_on(sim, f"{fault}=1@notifications")
        await sim.pay(out_trade_no="v3-order-01")
        await sim.deliver_due_notifications()
        clock.advance(15)
        await sim.deliver_due_notifications()
        (first_headers, first_body), (good_headers, good_body) = receiver.received
        signature = first_headers["wechatpay-signature"]
        if fault == "bad_signature":
            assert signature.startswith(PROBE_PREFIX)
        else:
            assert signature.startswith("garbage!")
        with pytest.raises(SignatureError):
            await client.verify_notification(first_headers, first_body)
        notice = await client.verify_notification(good_headers, good_body)
    log = sim.notification_log()
    sim.close()
    assert isinstance(notice, PaymentNotice)
    assert notice.transaction.out_trade_no == "v3-order-01"
    assert first_body == good_body
    assert [a["http_status"] for a in log[0]["attempts"]] == [401, 204]


async def test_v3_stale_timestamp(v3_sim: Simulator, v3_receiver: V3Receiver) -> None:
    sim, receiver = v3_sim, v3_receiver
    async with v3_client(sim, public_key_mode=True) as client:
        await client.create_native_order(native(sim))
        switch_on(sim, "stale_timestamp=600")
        await sim.pay(out_trade_no="v3-order-01")
        await sim.deliver_due_notifications()
        [(headers, body)] = receiver.received
        with pytest.raises(StaleMessageError):
            await client.verify_notification(headers, body)
        with pytest.raises(StaleMessageError):  # answers too
            await client.query_by_out_trade_no("v3-order-01")


@pytest.mark.parametrize("public_key_mode", [True, False], ids=["public-key", "certificate"])
async def test_v3_unknown_serial(
    v3_sim: Simulator, v3_receiver: V3Receiver, public_key_mode: bool
) -> None:
    sim, receiver = v3_sim, v3_receiver
    async with v3_client(sim, public_key_mode=public_key_mode) as client:
        await client.create_native_order(native(sim))
        switch_on(sim, "unknown_serial@notifications")
        await sim.pay(out_trade_no="v3-order-01")
        await sim.deliver_due_notifications()
        [(headers, body)] = receiver.received
        # certificate mode downloads /v3/certificates once, still does not find it
        with pytest.raises(UnknownKeyError):
            await client.verify_notification(headers, body)
        switch_on(sim, "unknown_serial@api")
        with pytest.raises(UnknownKeyError):
            await client.query_by_out_trade_no("v3-order-01")
        sim.faults.clear()
        assert (await client.query_by_out_trade_no("v3-order-01")).trade_state is TradeState.SUCCESS


async def test_order_faults_from_a_header_touch_that_order_only(
    sim: Simulator, client: V2Client, receiver: Receiver, raw: httpx.AsyncClient
) -> None:
    for number in ("order-a", "order-b"):
        await client.create_native_order(order(number))
    paid = await raw.post(
        "/sim/pay",
        json={"out_trade_no": "order-a"},
        headers={"X-Sim-Fault": "duplicate_notifications=4"},
    )
    assert paid.json()["paid"] is True
    await sim.pay(out_trade_no="order-b")
    await sim.deliver_due_notifications()
    assert sorted(delivered_numbers(receiver)) == ["order-a"] * 4 + ["order-b"]
    state = (await raw.get("/sim/faults")).json()
    assert state["faults"] == {}
    assert state["orders"]["order-a"]["duplicate_notifications"]["value"] == 4


class Gathering:
    """A notify_url that answers only once ``expected`` deliveries are in flight together."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.arrived = 0
        self.together = asyncio.Event()
        self.app = Starlette(routes=[Route("/notify/v2", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        await request.body()
        self.arrived += 1
        if self.arrived == self.expected:
            self.together.set()
        async with asyncio.timeout(10):
            await self.together.wait()
        return Response(ACK_SUCCESS, media_type="text/xml")


async def test_duplicates_arrive_at_once(
    clock: SimClock, credentials: tuple[MerchantCredentials, SimulatorKeys]
) -> None:
    merchant = Gathering(expected=5)
    sim = Simulator.create(
        clock=clock, credentials=credentials, notify_transport=httpx.ASGITransport(merchant.app)
    )
    async with sim:
        switch_on(sim, "duplicate_notifications=5")
        async with V2Client(
            sim.credentials.v2_merchant(),
            base_url="http://sim.test",
            transport=httpx.ASGITransport(app=sim.app),
        ) as client:
            await pay_orders(sim, client, 1)
        await sim.deliver_due_notifications()  # would wait forever if sent one by one
        [note] = sim.notification_log()
    sim.close()
    assert merchant.arrived == 5
    assert note["status"] == "delivered"


class WithHeader(httpx.AsyncBaseTransport):
    """Adds one header to every request (how a test reaches X-Sim-Fault through a client)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, name: str, value: str) -> None:
        self.inner, self.name, self.value = inner, name, value

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers[self.name] = self.value
        return await self.inner.handle_async_request(request)


async def test_notification_faults_in_the_prepay_header(
    sim: Simulator, client: V2Client, receiver: Receiver
) -> None:
    transport = WithHeader(httpx.ASGITransport(app=sim.app), "X-Sim-Fault", "drop_notifications")
    async with V2Client(
        sim.credentials.v2_merchant(), base_url="http://sim.test", transport=transport
    ) as dropping:
        await dropping.create_native_order(order("order-lost"))
    await client.create_native_order(order("order-kept"))
    for number in ("order-lost", "order-kept"):
        await sim.pay(out_trade_no=number)
    await sim.deliver_due_notifications()
    assert delivered_numbers(receiver) == ["order-kept"]
    statuses = {n["out_trade_no"]: n["status"] for n in sim.notification_log()}
    assert statuses == {"order-lost": "dropped", "order-kept": "delivered"}
