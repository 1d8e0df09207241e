"""Fixtures: an in-memory simulator on a frozen clock, a merchant receiver, a v2 client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.simulator import SimClock, Simulator, generate_credentials
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.keys import TrustStore, load_private_key, load_public_key
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.notify import ACK_SUCCESS, ack_failure
from scanpay.wechat.v2.orders import UnifiedOrder

from .live import Inbox, serve_receiver, serve_simulator

START = datetime(2025, 3, 1, 2, 0, 0, tzinfo=UTC)
NOTIFY_URL = "http://shop.test/notify/v2"


class Receiver:
    """A merchant's notify_url: records bodies, answers FAIL ``failures`` times, then SUCCESS."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.failures = 0
        self.answer_status = 200
        self.app = Starlette(routes=[Route("/notify/v2", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        self.bodies.append(await request.body())
        if self.failures > 0:
            self.failures -= 1
            return Response(ack_failure("busy"), status_code=self.answer_status)
        return Response(ACK_SUCCESS, media_type="text/xml")


class V3Receiver:
    """Takes API v3 notifications; answers 500 while ``failures`` lasts."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.failures = 0
        self.app = Starlette(routes=[Route("/notify/v3", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        if self.failures > 0:
            self.failures -= 1
            return Response(b'{"code":"FAIL","message":"busy"}', status_code=500)
        return Response(status_code=204)


@pytest.fixture
def v3_receiver() -> V3Receiver:
    return V3Receiver()


@pytest.fixture
async def v3_sim(
    clock: SimClock,
    v3_receiver: V3Receiver,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[Simulator]:
    sim = Simulator.create(
        clock=clock,
        notify_transport=httpx.ASGITransport(app=v3_receiver.app),
        credentials=credentials,
    )
    async with sim:
        yield sim
    sim.close()


@pytest.fixture
def clock() -> SimClock:
    return SimClock(start=START)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Simulator, str]]:
    """The simulator served on a loopback port (``scanpay.simulator`` over real HTTP), its URL."""
    with serve_simulator() as running:
        yield running


@pytest.fixture
def live_receiver() -> Iterator[tuple[Inbox, str]]:
    """A notification receiver on a loopback port, and the URL to notify."""
    with serve_receiver() as running:
        yield running


@pytest.fixture(scope="session")
def credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    return generate_credentials()


@pytest.fixture
async def sim(
    clock: SimClock, receiver: Receiver, credentials: tuple[MerchantCredentials, SimulatorKeys]
) -> AsyncIterator[Simulator]:
    simulator = Simulator.create(
        clock=clock,
        notify_transport=httpx.ASGITransport(app=receiver.app),
        credentials=credentials,
    )
    async with simulator:
        yield simulator
    simulator.close()


def make_client(sim: Simulator, sign_type: SignType = SignType.MD5) -> V2Client:
    return V2Client(
        sim.credentials.v2_merchant(sign_type),
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=sim.app),
    )


def make_v3_client(sim: Simulator, **options: Any) -> V3Client:
    """scanpay's V3Client for ``sim``'s merchant in public-key mode (it trusts the platform
    public key); ``options``: more of V3Client's keyword arguments (clock, retry, sleep...)."""
    creds = sim.credentials
    trust = TrustStore()
    trust.add_public_key(
        creds.wechatpay_public_key_id, load_public_key(creds.wechatpay_public_key_pem)
    )
    return V3Client(
        creds.mchid,
        creds.merchant_serial_no,
        load_private_key(creds.merchant_private_key_pem.reveal()),
        creds.api_v3_key,
        trust,
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=sim.app),
        **options,
    )


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[V2Client]:
    async with make_client(sim) as v2:
        yield v2


@pytest.fixture
async def raw(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the simulator, for requests no well-behaved client would send."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app), base_url="http://sim.test"
    ) as http:
        yield http


def order(out_trade_no: str = "order-0001", **changes: object) -> UnifiedOrder:
    values: dict[str, object] = {
        "out_trade_no": out_trade_no,
        "body": "Green tea, 250 g",
        "total_fee": 1250,
        "notify_url": NOTIFY_URL,
        "product_id": "tea-250",
        "attach": "cart=42",
    }
    values.update(changes)
    return UnifiedOrder(**values)  # type: ignore[arg-type]
