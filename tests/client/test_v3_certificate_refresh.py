"""V3Client's platform-certificate downloads against the simulator: an empty list (a new
merchant) is a valid answer with a clear error telling the operator to use public-key mode,
and forged messages naming unknown serials cannot make the client download once per message."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from scanpay.client.v3 import V3Client
from scanpay.errors import UnknownKeyError
from scanpay.simulator import SimClock, Simulator, generate_credentials
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.simulator.faults import parse_fault
from scanpay.wechat.keys import TrustStore, load_certificate, load_private_key
from scanpay.wechat.v3.notify import PaymentNotice
from scanpay.wechat.v3.transactions import NativeOrder


@pytest.fixture(scope="module")
def credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    return generate_credentials()


class Counting:
    """ASGI wrapper in front of the simulator that counts requests per path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)

    def downloads(self) -> int:
        return self.paths.count("/v3/certificates")


class Inbox(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.received: list[tuple[httpx.Headers, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.received.append((request.headers, await request.aread()))
        return httpx.Response(204)


class Clock:
    """Real time plus an offset the test moves (signatures stay inside the 5-minute window)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
async def sim(
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[tuple[Simulator, Inbox]]:
    inbox = Inbox()
    simulator = Simulator.create(clock=SimClock(), notify_transport=inbox, credentials=credentials)
    async with simulator:
        yield simulator, inbox
    simulator.close()


def certificate_mode(sim: Simulator, front: Counting, clock: Clock) -> V3Client:
    creds = sim.credentials
    trust = TrustStore(certificates=[load_certificate(creds.platform_certificate_pem)])
    return V3Client(
        creds.mchid,
        creds.merchant_serial_no,
        load_private_key(creds.merchant_private_key_pem.reveal()),
        creds.api_v3_key,
        trust,
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=front),
        clock=clock,
    )


def order(sim: Simulator, number: str) -> NativeOrder:
    return NativeOrder(
        appid=sim.credentials.appid,
        mchid=sim.credentials.mchid,
        description="Pu-erh, 357 g",
        out_trade_no=number,
        notify_url="http://shop.test/notify/v3",
        total=2300,
    )


async def test_new_merchant_has_no_certificates(sim: tuple[Simulator, Inbox]) -> None:
    simulator, _ = sim
    simulator.faults.set([parse_fault("new_merchant")], now=simulator.clock.timestamp())
    front = Counting(simulator.app)
    async with certificate_mode(simulator, front, Clock()) as client:
        assert await client.refresh_certificates() == []  # valid: nothing to trust
        assert client.trust.certificate_serials == (simulator.credentials.platform_serial_no,)
        with pytest.raises(UnknownKeyError, match="public-key mode") as caught:
            await client.create_native_order(order(simulator, "new-merchant-1"))
        assert simulator.credentials.wechatpay_public_key_id in caught.value.message


async def test_empty_list_for_an_unknown_certificate_serial(
    sim: tuple[Simulator, Inbox],
) -> None:
    """A certificate-mode client that meets an unknown certificate serial downloads, finds an
    empty list and says to configure the public key."""
    simulator, inbox = sim
    front = Counting(simulator.app)
    async with certificate_mode(simulator, front, Clock()) as client:
        await client.create_native_order(order(simulator, "new-merchant-2"))
        await simulator.pay(out_trade_no="new-merchant-2")
        await simulator.deliver_due_notifications()
        [(headers, body)] = inbox.received
        forged = dict(headers)
        forged["wechatpay-serial"] = "7" * 40
        simulator.faults.set([parse_fault("new_merchant")], now=simulator.clock.timestamp())
        with pytest.raises(UnknownKeyError, match=r"no platform certificates.*public-key mode"):
            await client.verify_notification(forged, body)
        assert front.downloads() == 1


async def test_forged_serials_cannot_amplify_downloads(sim: tuple[Simulator, Inbox]) -> None:
    simulator, inbox = sim
    front = Counting(simulator.app)
    clock = Clock()
    async with certificate_mode(simulator, front, clock) as client:
        await client.create_native_order(order(simulator, "forged-1"))
        await simulator.pay(out_trade_no="forged-1")
        await simulator.deliver_due_notifications()
        [(headers, body)] = inbox.received
        assert isinstance(await client.verify_notification(headers, body), PaymentNotice)
        assert front.downloads() == 0  # the configured certificate was enough

        for number in range(10):
            forged = dict(headers)
            forged["wechatpay-serial"] = f"{number:040X}"
            with pytest.raises(UnknownKeyError):
                await client.verify_notification(forged, body)
        assert front.downloads() == 1  # one download, then refused without asking WeChat

        clock.offset = 59
        with pytest.raises(UnknownKeyError, match="less than 60 s ago"):
            await client.verify_notification(forged, body)
        assert front.downloads() == 1
        clock.offset = 61
        with pytest.raises(UnknownKeyError):
            await client.verify_notification(forged, body)
        assert front.downloads() == 2  # the window passed: one more download

        # genuine messages still verify meanwhile, and an explicit refresh is never held back
        assert isinstance(await client.verify_notification(headers, body), PaymentNotice)
        assert await client.refresh_certificates() == [simulator.credentials.platform_serial_no]
        assert front.downloads() == 3


async def test_rotation_after_a_good_download_is_picked_up_at_once(
    sim: tuple[Simulator, Inbox],
) -> None:
    simulator, _ = sim
    front = Counting(simulator.app)
    async with certificate_mode(simulator, front, Clock()) as client:
        await client.create_native_order(order(simulator, "rotate-1"))
        first = simulator.v3.keyring.rotate()
        await client.query_by_out_trade_no("rotate-1")
        second = simulator.v3.keyring.rotate()
        await client.query_by_out_trade_no("rotate-1")
        assert {first, second} <= set(client.trust.certificate_serials)
        assert front.downloads() == 2


async def test_limits_are_per_serial_and_per_sender_never_global(
    sim: tuple[Simulator, Inbox],
) -> None:
    """Issue 9: a forged serial holds back only that serial and that sender; a new serial from
    another sender, and any answer from the API itself, still download at once."""
    simulator, inbox = sim
    front = Counting(simulator.app)
    async with certificate_mode(simulator, front, Clock()) as client:
        await client.create_native_order(order(simulator, "limits-1"))
        await simulator.pay(out_trade_no="limits-1")
        await simulator.deliver_due_notifications()
        [(headers, body)] = inbox.received
        forged = dict(headers)
        forged["wechatpay-serial"] = "A" * 40
        with pytest.raises(UnknownKeyError):
            await client.verify_notification(forged, body, sender="192.0.2.1")
        assert front.downloads() == 1
        forged["wechatpay-serial"] = "B" * 40
        with pytest.raises(UnknownKeyError, match="this sender triggered"):
            await client.verify_notification(forged, body, sender="192.0.2.1")
        forged["wechatpay-serial"] = "A" * 40
        with pytest.raises(UnknownKeyError, match="without it"):
            await client.verify_notification(forged, body, sender="192.0.2.2")
        assert front.downloads() == 1  # neither the sender nor the serial could trigger more
        forged["wechatpay-serial"] = "C" * 40
        with pytest.raises(UnknownKeyError):
            await client.verify_notification(forged, body, sender="192.0.2.3")
        assert front.downloads() == 2  # a new serial from a new sender: downloaded
        simulator.v3.keyring.rotate()
        await client.query_by_out_trade_no("limits-1")  # the API's answer: always allowed
        assert front.downloads() == 3
