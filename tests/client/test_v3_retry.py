"""Retry policy of the v3 client: only safe repeats, backoff with injected sleep and random."""

from __future__ import annotations

import httpx
import pytest

from scanpay.client.retry import NO_RETRY, NOT_SENT, RetryPolicy, call_with_retry, is_retryable
from scanpay.client.v3 import V3Client
from scanpay.errors import ApiError, RetryableApiError, SignatureError, TransportError
from scanpay.wechat.keys import TrustStore, certificate_serial
from scanpay.wechat.secret import Secret
from scanpay.wechat.v3.request import ApiRequest
from tests.client.test_v3_client import MERCHANT_CERT, ORDER, public_key_peer
from tests.wechat.v3.factories import API_V3_KEY, MCHID, NOW, PUBLIC_KEY_ID, rsa_key
from tests.wechat.v3.peer import Peer


class FlakyConnect(httpx.AsyncBaseTransport):
    """Fails to connect ``failures`` times, then hands over to the peer."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, failures: int, error: type[Exception]
    ) -> None:
        self.inner, self.failures, self.error = inner, failures, error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            self.failures -= 1
            raise self.error("injected", request=request)  # type: ignore[call-arg]
        return await self.inner.handle_async_request(request)


def make(
    peer: Peer, *, transport: httpx.AsyncBaseTransport | None = None, attempts: int = 3
) -> tuple[V3Client, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    policy = RetryPolicy(attempts=attempts, base_delay=0.5, max_delay=1.5, jitter=0.5)
    client = V3Client(
        MCHID,
        certificate_serial(MERCHANT_CERT),
        rsa_key("merchant"),
        Secret(API_V3_KEY),
        TrustStore(public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())]),
        transport=transport or httpx.ASGITransport(app=peer),
        clock=lambda: float(NOW),
        retry=policy,
        sleep=sleep,
        random_source=lambda: 0.5,
    )
    return client, sleeps


async def test_system_error_is_retried_with_backoff_and_fresh_signature() -> None:
    peer = public_key_peer()
    peer.faults = [(500, "SYSTEM_ERROR"), (500, "SYSTEMERROR")]
    client, sleeps = make(peer)
    async with client:
        assert (await client.create_native_order(ORDER)).startswith("weixin://")
    assert sleeps == [0.375, 0.75]
    bodies = {s.body for s in peer.seen}
    assert len(bodies) == 1  # the same bytes each time
    assert len({s.headers["authorization"] for s in peer.seen}) == 3  # re-signed, fresh nonce


async def test_gives_up_after_the_attempts() -> None:
    peer = public_key_peer()
    peer.faults = [(503, "SYSTEM_ERROR")] * 3
    client, sleeps = make(peer)
    async with client:
        with pytest.raises(RetryableApiError) as info:
            await client.create_native_order(ORDER)
    assert info.value.http_status == 503
    assert len(sleeps) == 2


async def test_business_errors_and_protocol_errors_are_not_retried() -> None:
    peer = public_key_peer()
    peer.faults = [(400, "PARAM_ERROR")]
    client, sleeps = make(peer)
    async with client:
        with pytest.raises(ApiError) as info:
            await client.create_native_order(ORDER)
        assert type(info.value) is ApiError
        peer.tamper = True
        with pytest.raises(SignatureError):
            await client.create_native_order(ORDER)
    assert sleeps == []
    assert len(peer.seen) == 2


async def test_non_idempotent_call_is_not_repeated_after_sending() -> None:
    peer = public_key_peer()
    peer.faults = [(500, "SYSTEM_ERROR")]
    client, sleeps = make(peer)
    request = ApiRequest("POST", "/v3/pay/transactions/native", b"{}", idempotent=False)
    async with client:
        with pytest.raises(RetryableApiError):
            await client.send(request)
    assert sleeps == []


async def test_connection_failure_before_sending_is_always_retried() -> None:
    peer = public_key_peer()
    flaky = FlakyConnect(httpx.ASGITransport(app=peer), 2, httpx.ConnectError)
    client, sleeps = make(peer, transport=flaky)
    request = ApiRequest("POST", "/v3/pay/transactions/native", b"{}", idempotent=False)
    async with client:
        with pytest.raises(ApiError):  # reaches the peer, which rejects the empty body
            await client.send(request)
    assert len(sleeps) == 2
    assert len(peer.seen) == 1


async def test_read_timeout_is_transport_error_and_retried_only_when_idempotent() -> None:
    peer = public_key_peer()
    client, sleeps = make(
        peer, transport=FlakyConnect(httpx.ASGITransport(app=peer), 1, httpx.ReadTimeout)
    )
    async with client:
        assert (await client.create_native_order(ORDER)).startswith("weixin://")
        assert len(sleeps) == 1
        client2, sleeps2 = make(
            peer, transport=FlakyConnect(httpx.ASGITransport(app=peer), 1, httpx.ReadTimeout)
        )
        async with client2:
            with pytest.raises(TransportError) as info:
                await client2.send(ApiRequest("POST", "/v3/x", b"{}", idempotent=False))
        assert info.value.code != NOT_SENT
        assert sleeps2 == []


def test_policy_arithmetic() -> None:
    policy = RetryPolicy(attempts=5, base_delay=1, multiplier=2, max_delay=3, jitter=1)
    assert [policy.delay(n, 0.5) for n in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 1.5]
    assert RetryPolicy(jitter=0).delay(1, 0.99) == 0.25
    assert is_retryable(TransportError("x", code=NOT_SENT), idempotent=False)
    assert not is_retryable(RetryableApiError("x"), idempotent=False)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


async def test_no_retry_policy() -> None:
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        raise TransportError("x", code=NOT_SENT)

    with pytest.raises(TransportError):
        await call_with_retry(fail, NO_RETRY, idempotent=True)
    assert calls == 1
