"""V2Client against the simulator: calls, retry rules (faults at the transport), secrets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from scanpay.client.v2 import RetryPolicy, V2Client
from scanpay.errors import (
    ApiError,
    ConfigurationError,
    MalformedMessageError,
    RetryableApiError,
    TransportError,
)
from scanpay.simulator import Simulator
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v2.envelope import business_failure, encode_response
from scanpay.wechat.v2.notify import build_payment_notification
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v2.refunds import RefundRequest

NOTIFY_URL = "https://shop.example/notify/v2"


def order(out_trade_no: str = "SP20240305a1") -> UnifiedOrder:
    return UnifiedOrder(
        out_trade_no=out_trade_no,
        body="Green tea, 250 g",
        total_fee=1250,
        notify_url=NOTIFY_URL,
        product_id="tea-250",
    )


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator.create()
    yield simulator
    simulator.close()


class Faults(httpx.AsyncBaseTransport):
    """The network between client and simulator: plays scripted faults, then passes through."""

    def __init__(self, sim: Simulator, script: list[Callable[[httpx.Request], httpx.Response]]):
        self.inner = httpx.ASGITransport(app=sim.app)
        self.script = script
        self.requests: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(await request.aread())
        if self.script:
            return self.script.pop(0)(request)
        return await self.inner.handle_async_request(request)


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("no answer", request=request)


def http_503(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, content=b"busy")


def system_error(sim: Simulator, sign_type: SignType) -> Callable[[httpx.Request], httpx.Response]:
    creds = sim.credentials

    def answer(request: httpx.Request) -> httpx.Response:
        fields = {"appid": creds.appid, "mch_id": creds.mchid, **business_failure("SYSTEMERROR")}
        return httpx.Response(
            200, content=encode_response(fields, creds.api_v2_key, sign_type, nonce="sys")
        )

    return answer


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def client(
    sim: Simulator,
    transport: httpx.AsyncBaseTransport,
    *,
    sign_type: SignType = SignType.MD5,
    attempts: int = 3,
    sleeps: Sleeps | None = None,
) -> V2Client:
    return V2Client(
        sim.credentials.v2_merchant(sign_type),
        base_url="http://sim.test",
        transport=transport,
        retry=RetryPolicy(attempts=attempts, base_delay=0.2, jitter=0.5),
        sleep=sleeps or Sleeps(),
        random=lambda: 1.0,  # the top of the jitter range: delays are exactly the ceilings
    )


@pytest.mark.parametrize("sign_type", [SignType.MD5, SignType.HMAC_SHA256])
async def test_create_and_query_against_the_simulator(sim: Simulator, sign_type: SignType) -> None:
    async with client(sim, Faults(sim, []), sign_type=sign_type) as v2:
        created = await v2.create_native_order(order())
        assert created.code_url.startswith("weixin://")
        status = await v2.query_order(out_trade_no="SP20240305a1")
        assert status.trade_state is TradeState.NOTPAY
        assert status.total_fee == 1250


async def test_connection_refused_is_retried_with_backoff(sim: Simulator) -> None:
    sleeps = Sleeps()
    faults = Faults(sim, [refuse_connection, refuse_connection])
    async with client(sim, faults, sleeps=sleeps) as v2:
        assert (await v2.create_native_order(order())).code_url
    assert sleeps.delays == [0.2, 0.4]
    assert len(set(faults.requests)) == 1  # the very same bytes each time


async def test_connection_refused_too_often_is_a_transport_error(sim: Simulator) -> None:
    faults = Faults(sim, [refuse_connection] * 3)
    async with client(sim, faults) as v2:
        with pytest.raises(TransportError):
            await v2.query_order(out_trade_no="SP20240305a1")
    assert len(faults.requests) == 3


async def test_read_timeout_retried_only_when_idempotent(sim: Simulator) -> None:
    faults = Faults(sim, [read_timeout, read_timeout])
    async with client(sim, faults) as v2:
        with pytest.raises(TransportError):
            await v2.call("/pay/orderquery", {"out_trade_no": "SP20240305a1"}, idempotent=False)
        assert len(faults.requests) == 1
        assert (await v2.create_native_order(order())).code_url  # same out_trade_no: repeat
    assert len(faults.requests) == 3


async def test_system_error_is_retried_on_idempotent_calls(sim: Simulator) -> None:
    sleeps = Sleeps()
    faults = Faults(sim, [system_error(sim, SignType.HMAC_SHA256), http_503])
    async with client(sim, faults, sign_type=SignType.HMAC_SHA256, sleeps=sleeps) as v2:
        assert (await v2.create_native_order(order())).code_url
    assert len(faults.requests) == 3
    assert sleeps.delays == [0.2, 0.4]


async def test_system_error_not_retried_when_not_idempotent(sim: Simulator) -> None:
    faults = Faults(sim, [system_error(sim, SignType.MD5)])
    async with client(sim, faults) as v2:
        with pytest.raises(RetryableApiError) as caught:
            await v2.call("/pay/orderquery", {"out_trade_no": "SP20240305a1"}, idempotent=False)
    assert caught.value.code == "SYSTEMERROR"
    assert len(faults.requests) == 1


async def test_system_error_until_attempts_run_out(sim: Simulator) -> None:
    faults = Faults(sim, [system_error(sim, SignType.MD5)] * 2)
    async with client(sim, faults, attempts=2) as v2:
        with pytest.raises(RetryableApiError):
            await v2.create_native_order(order())


async def test_business_errors_are_typed(sim: Simulator) -> None:
    async with client(sim, Faults(sim, [])) as v2:
        with pytest.raises(ApiError) as caught:
            await v2.query_order(out_trade_no="SP20249999zz")
    assert caught.value.code == "ORDERNOTEXIST"
    assert not isinstance(caught.value, RetryableApiError)


async def test_refund_without_certificate_or_transport_is_a_configuration_error(
    sim: Simulator,
) -> None:
    v2 = V2Client(sim.credentials.v2_merchant(SignType.MD5), base_url="https://127.0.0.1:9")
    request = RefundRequest(
        out_trade_no="SP20240305a1", out_refund_no="R1", total_fee=1, refund_fee=1
    )
    async with v2:
        with pytest.raises(ConfigurationError):
            await v2.refund(request)


def test_payment_notification_helper_checks_merchant(sim: Simulator) -> None:
    creds = sim.credentials
    v2 = V2Client(creds.v2_merchant(SignType.MD5))
    fields: dict[str, str | int] = {
        "appid": creds.appid,
        "mch_id": creds.mchid,
        "nonce_str": "n",
        "out_trade_no": "SP20240305a1",
        "transaction_id": "4200002024030512345678901234",
        "total_fee": 1250,
        "time_end": "20240305091244",
    }
    body = build_payment_notification(fields, creds.api_v2_key, SignType.HMAC_SHA256)
    assert v2.verify_payment_notification(body).status.total_fee == 1250
    other = build_payment_notification(
        {**fields, "mch_id": "1900000000"}, creds.api_v2_key, SignType.MD5
    )
    with pytest.raises(MalformedMessageError):
        v2.verify_payment_notification(other)


def test_repr_hides_the_key(sim: Simulator) -> None:
    v2 = V2Client(sim.credentials.v2_merchant(SignType.MD5))
    key = sim.credentials.api_v2_key.reveal()
    assert key not in repr(v2)
    assert key not in repr(v2.merchant)
