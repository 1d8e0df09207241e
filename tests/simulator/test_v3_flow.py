"""API v3 Native against the simulator through scanpay's V3Client (public-key and certificate
modes): prepay, pay, signed and encrypted notification, query, close, signature failures."""

from __future__ import annotations

import httpx
import pytest

from scanpay.client.v3 import V3Client
from scanpay.errors import ApiError
from scanpay.simulator import SimClock, Simulator
from scanpay.wechat.keys import TrustStore, load_private_key, load_public_key
from scanpay.wechat.states import TradeState
from scanpay.wechat.v3.notify import PaymentNotice
from scanpay.wechat.v3.transactions import NativeOrder

from .conftest import V3Receiver

NOTIFY_URL = "http://shop.test/notify/v3"


def v3_client(sim: Simulator, *, public_key_mode: bool, key: str | None = None) -> V3Client:
    creds = sim.credentials
    trust = TrustStore()
    if public_key_mode:
        trust.add_public_key(
            creds.wechatpay_public_key_id, load_public_key(creds.wechatpay_public_key_pem)
        )
    return V3Client(
        creds.mchid,
        creds.merchant_serial_no,
        load_private_key(key or creds.merchant_private_key_pem.reveal()),
        creds.api_v3_key,
        trust,
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=sim.app),
    )


def native(sim: Simulator, out_trade_no: str = "v3-order-01", total: int = 880) -> NativeOrder:
    return NativeOrder(
        appid=sim.credentials.appid,
        mchid=sim.credentials.mchid,
        description="Oolong, 100 g",
        out_trade_no=out_trade_no,
        notify_url=NOTIFY_URL,
        total=total,
        attach="cart=7",
    )


@pytest.mark.parametrize("public_key_mode", [True, False], ids=["public-key", "certificate"])
async def test_v3_flow(v3_sim: Simulator, v3_receiver: V3Receiver, public_key_mode: bool) -> None:
    async with v3_client(v3_sim, public_key_mode=public_key_mode) as client:
        code_url = await client.create_native_order(native(v3_sim))
        assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
        assert await client.create_native_order(native(v3_sim)) == code_url
        unpaid = await client.query_by_out_trade_no("v3-order-01")
        assert unpaid.trade_state is TradeState.NOTPAY

        paid = await v3_sim.pay(code_url=code_url)
        await v3_sim.deliver_due_notifications()
        [(headers, body)] = v3_receiver.received
        expected = (
            v3_sim.credentials.wechatpay_public_key_id
            if public_key_mode
            else v3_sim.credentials.platform_serial_no
        )
        assert headers["wechatpay-serial"] == expected
        notice = await client.verify_notification(headers, body)
        assert isinstance(notice, PaymentNotice)
        assert notice.transaction.out_trade_no == "v3-order-01"
        assert notice.transaction.transaction_id == paid.transaction_id
        assert notice.transaction.total == 880
        assert notice.transaction.attach == "cart=7"

        done = await client.query_by_transaction_id(paid.transaction_id)
        assert done.trade_state is TradeState.SUCCESS
        assert done.payer_total == 880

        await client.create_native_order(native(v3_sim, "v3-order-02"))
        await client.close_order("v3-order-02")
        await client.close_order("v3-order-02")  # closing again succeeds, as WeChat's does
        closed = await client.query_by_out_trade_no("v3-order-02")
        assert closed.trade_state is TradeState.CLOSED


async def test_v3_errors(v3_sim: Simulator) -> None:
    async with v3_client(v3_sim, public_key_mode=True) as client:
        with pytest.raises(ApiError) as missing:
            await client.query_by_out_trade_no("nothing-here")
        assert missing.value.code == "ORDER_NOT_EXIST"
        assert missing.value.http_status == 404
        await client.create_native_order(native(v3_sim))
        with pytest.raises(ApiError) as reused:
            await client.create_native_order(native(v3_sim, total=1))
        assert reused.value.code == "OUT_TRADE_NO_USED"
        await v3_sim.pay(out_trade_no="v3-order-01")
        with pytest.raises(ApiError) as close_paid:
            await client.close_order("v3-order-01")
        assert close_paid.value.http_status == 403


async def test_v3_wrong_key_is_sign_error(v3_sim: Simulator) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    async with v3_client(v3_sim, public_key_mode=True, key=pem) as client:
        with pytest.raises(ApiError) as caught:
            await client.create_native_order(native(v3_sim))
    assert caught.value.code == "SIGN_ERROR"
    assert caught.value.http_status == 401
    assert v3_sim.ledger.orders() == []


async def test_v3_unsigned_request(v3_sim: Simulator) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=v3_sim.app), base_url="http://sim.test"
    ) as http:
        response = await http.post("/v3/pay/transactions/native", content=b"{}")
    assert response.status_code == 401
    assert response.json()["code"] == "SIGN_ERROR"
    assert response.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert response.headers["Request-ID"]


async def test_v3_notification_retries_are_resigned(
    v3_sim: Simulator, v3_receiver: V3Receiver, clock: SimClock
) -> None:
    v3_receiver.failures = 1
    async with v3_client(v3_sim, public_key_mode=True) as client:
        await client.create_native_order(native(v3_sim))
        await v3_sim.pay(out_trade_no="v3-order-01")
        await v3_sim.deliver_due_notifications()
        clock.advance(15)
        await v3_sim.deliver_due_notifications()
        first, second = v3_receiver.received
        assert first[1] == second[1]  # same body (same notification id)
        assert first[0]["wechatpay-nonce"] != second[0]["wechatpay-nonce"]
        await client.verify_notification(second[0], second[1])
    [note] = v3_sim.notification_log()
    assert [a["http_status"] for a in note["attempts"]] == [500, 204]
    assert note["status"] == "delivered"
