"""V3Client against an in-process WeChat peer built from scanpay's own core (real HTTP via
httpx.ASGITransport, real signatures both ways)."""

from __future__ import annotations

import dataclasses
from datetime import date

import httpx
import pytest

from scanpay.client.v3 import V3Client
from scanpay.errors import (
    ApiError,
    MalformedMessageError,
    SignatureError,
    StaleMessageError,
    UnknownKeyError,
)
from scanpay.wechat.keys import TrustStore, certificate_serial
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import RefundState, TradeState
from scanpay.wechat.v3.notify import PaymentNotice, RefundNotice
from scanpay.wechat.v3.refunds import RefundApplication
from scanpay.wechat.v3.sign import parse_authorization, request_signing_string, verify_message
from scanpay.wechat.v3.transactions import NativeOrder, native_prepay_request
from tests.wechat.v3.factories import (
    API_V3_KEY,
    APPID,
    MCHID,
    NOW,
    PUBLIC_KEY_ID,
    certificate,
    platform_certificate,
    rsa_key,
)
from tests.wechat.v3.peer import Peer

MERCHANT_CERT = certificate(rsa_key("merchant"), 0x408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB)
ORDER = NativeOrder(
    appid=APPID,
    mchid=MCHID,
    description="Image形象店-深圳腾大-QQ公仔",
    out_trade_no="order_000001",
    notify_url="https://shop.example/notify/v3",
    total=100,
)


def public_key_peer() -> Peer:
    return Peer(TrustStore(certificates=[MERCHANT_CERT]), PUBLIC_KEY_ID, rsa_key("wechat"))


def client_for(peer: Peer, trust: TrustStore | None = None, **options: object) -> V3Client:
    if trust is None:
        trust = TrustStore(public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())])
    return V3Client(
        MCHID,
        certificate_serial(MERCHANT_CERT),
        rsa_key("merchant"),
        Secret(API_V3_KEY),
        trust,
        base_url="https://api.mch.weixin.qq.com",
        transport=httpx.ASGITransport(app=peer),
        clock=lambda: float(NOW),
        **options,  # type: ignore[arg-type]
    )


async def test_native_order_signs_the_exact_bytes_it_sends() -> None:
    peer = public_key_peer()
    async with client_for(peer) as client:
        code_url = await client.create_native_order(ORDER)
    assert code_url == "weixin://wxpay/bizpayurl?pr=000001"
    seen = peer.seen[-1]
    assert seen.body == native_prepay_request(ORDER).body
    auth = parse_authorization(seen.headers["authorization"])
    message = request_signing_string("POST", seen.target, auth.timestamp, auth.nonce_str, seen.body)
    verify_message(rsa_key("merchant").public_key(), message, auth.signature)
    assert "Image形象店".encode() in seen.body  # UTF-8, not \\u escapes
    assert seen.headers["wechatpay-serial"] == PUBLIC_KEY_ID
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["accept"] == "application/json"


async def test_query_close_refund_and_bills() -> None:
    peer = public_key_peer()
    async with client_for(peer) as client:
        await client.create_native_order(ORDER)
        found = await client.query_by_out_trade_no("order_000001")
        assert found.trade_state is TradeState.NOTPAY
        assert peer.seen[-1].target == (
            "/v3/pay/transactions/out-trade-no/order_000001?mchid=1900007291"
        )
        peer.orders["order_000001"] = dataclasses.replace(
            found, trade_state=TradeState.SUCCESS, transaction_id="4200000001", payer_total=100
        )
        paid = await client.query_by_transaction_id("4200000001")
        assert paid.trade_state is TradeState.SUCCESS
        await client.close_order("order_000001")
        assert peer.seen[-1].body == b'{"mchid":"1900007291"}'
        refund = await client.create_refund(
            RefundApplication("refund_1", 40, 100, out_trade_no="order_000001")
        )
        assert refund.status is RefundState.PROCESSING
        assert (await client.query_refund("refund_1")).refund == 40
        for gz in (False, True):
            peer.bill_gzip = gz
            bill = await client.trade_bill(date(2024, 1, 1), gzip=gz)
            assert bill.summary.settlement_total_fen == 100
        flow = await client.fund_flow_bill(date(2024, 1, 1))
        assert flow.summary.income_fen == 100
    assert peer.seen[-1].target == "/v3/billdownload/file?token=fund"


async def test_api_errors_carry_request_id() -> None:
    async with client_for(public_key_peer()) as client:
        with pytest.raises(ApiError) as info:
            await client.query_by_out_trade_no("order_missing")
    assert info.value.code == "ORDER_NOT_EXIST"
    assert info.value.http_status == 404
    assert info.value.request_id == "08F7-REQ-1"
    assert str(info.value).startswith("[08F7-REQ-1]")


@pytest.mark.parametrize(
    ("knob", "value", "error"),
    [
        ("tamper", True, SignatureError),
        ("skew", -301, StaleMessageError),
        ("skew", 301, StaleMessageError),
        ("drop_header", "Wechatpay-Signature", MalformedMessageError),
        ("drop_header", "Wechatpay-Serial", MalformedMessageError),
        ("signer_serial", "PUB_KEY_ID_0999", UnknownKeyError),
    ],
)
async def test_response_verification_failures(
    knob: str, value: object, error: type[Exception]
) -> None:
    peer = public_key_peer()
    setattr(peer, knob, value)
    async with client_for(peer) as client:
        with pytest.raises(error) as info:
            await client.create_native_order(ORDER)
    assert type(info.value) is error
    assert not any(s.target == "/v3/certificates" for s in peer.seen)


async def test_wrong_merchant_key_is_rejected_by_the_peer() -> None:
    peer = public_key_peer()
    client = V3Client(
        MCHID, certificate_serial(MERCHANT_CERT), rsa_key("intruder"), Secret(API_V3_KEY),
        TrustStore(public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())]),
        transport=httpx.ASGITransport(app=peer), clock=lambda: float(NOW),
    )  # fmt: skip
    async with client:
        with pytest.raises(ApiError) as info:
            await client.create_native_order(ORDER)
    assert info.value.code == "SIGN_ERROR"
    assert info.value.http_status == 401


async def test_certificate_mode_downloads_then_refreshes_on_rotation() -> None:
    old = platform_certificate("platform", 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1)
    peer = Peer(TrustStore(certificates=[MERCHANT_CERT]), "", rsa_key("platform"))
    peer.use_certificate(old, rsa_key("platform"))

    def downloads() -> int:
        return sum(s.target == "/v3/certificates" for s in peer.seen)

    async with client_for(peer, TrustStore()) as client:
        assert client.download_certificates
        await client.create_native_order(ORDER)
        assert downloads() == 1
        assert certificate_serial(old) in client.trust
        await client.query_by_out_trade_no("order_000001")
        assert downloads() == 1  # cached
        new = platform_certificate("platform-2", 0x77)
        peer.use_certificate(new, rsa_key("platform-2"))
        await client.query_by_out_trade_no("order_000001")
        assert downloads() == 2
        assert "Wechatpay-Serial".lower() not in peer.seen[-1].headers
        # a serial WeChat never published: one refresh, then UnknownKeyError
        peer.signer_serial = "AB" * 20
        with pytest.raises(UnknownKeyError):
            await client.query_by_out_trade_no("order_000001")
        assert downloads() == 3


async def test_migration_trusts_both_kinds() -> None:
    cert = platform_certificate("platform", 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1)
    trust = TrustStore(
        public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())], certificates=[cert]
    )
    peer = public_key_peer()
    async with client_for(peer, trust) as client:
        await client.create_native_order(ORDER)
        peer.use_certificate(cert, rsa_key("platform"))
        await client.query_by_out_trade_no("order_000001")
        headers, body = peer.notification(peer.orders["order_000001"])
        assert isinstance(await client.verify_notification(headers, body), PaymentNotice)
    assert not any(s.target == "/v3/certificates" for s in peer.seen)


async def test_notifications_through_the_client() -> None:
    peer = public_key_peer()
    async with client_for(peer) as client:
        await client.create_native_order(ORDER)
        paid = dataclasses.replace(
            peer.orders["order_000001"],
            trade_state=TradeState.SUCCESS,
            transaction_id="42",
            payer_total=100,
        )
        headers, body = peer.notification(paid)
        notice = await client.verify_notification(headers, body)
        assert isinstance(notice, PaymentNotice)
        assert notice.transaction == paid
        refund = await client.create_refund(
            RefundApplication("r1", 1, 100, out_trade_no="order_000001")
        )
        headers, body = peer.notification(
            dataclasses.replace(refund, status=RefundState.SUCCESS, mchid=MCHID)
        )
        assert isinstance(await client.verify_notification(headers, body), RefundNotice)
        with pytest.raises(SignatureError):
            await client.verify_notification(headers, body.replace(b"EV-0001", b"EV-0002"))
        # a payment naming another merchant is returned as it is: the domain compares it
        # with the order and raises the alert, as for API v2 (issue 9); a refund is refused
        other = dataclasses.replace(paid, mchid="1999999999")
        notice = await client.verify_notification(*peer.notification(other))
        assert isinstance(notice, PaymentNotice)
        assert notice.transaction.mchid == "1999999999"
        foreign = dataclasses.replace(refund, status=RefundState.SUCCESS, mchid="1999999999")
        with pytest.raises(MalformedMessageError):
            await client.verify_notification(*peer.notification(foreign))


def test_secrets_stay_out_of_reprs() -> None:
    client = client_for(public_key_peer())
    text = repr(client) + repr(client.merchant) + repr(client.trust)
    assert API_V3_KEY not in text
    assert "PRIVATE" not in text
    assert "private_key" not in text
