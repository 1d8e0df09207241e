"""Property-based notification round trips: scanpay builds (simulator side) and opens (merchant
side); wechatpayv3's Core, in public-key mode, opens what scanpay builds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization as ser
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from wechatpayv3.core import Core

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import BEIJING
from scanpay.wechat.keys import TrustStore
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import RefundState, TradeState
from scanpay.wechat.v3.notify import (
    PaymentNotice,
    RefundNotice,
    build_notification,
    verify_notification,
)
from scanpay.wechat.v3.refunds import Refund
from scanpay.wechat.v3.transactions import Transaction
from scanpay.wechat.v3.verify import read_signed_headers, sign_response
from tests.wechat.v3.factories import API_V3_KEY, APPID, MCHID, NOW, PUBLIC_KEY_ID, rsa_key

KEY = Secret(API_V3_KEY)
ids = st.from_regex(r"[0-9A-Za-z_\-]{6,32}", fullmatch=True)
amounts = st.integers(min_value=1, max_value=2**31 - 1)
moments = st.integers(min_value=0, max_value=10**8).map(
    lambda s: datetime(2020, 1, 1, tzinfo=BEIJING) + timedelta(seconds=s)
)
words = st.text(max_size=40)
transactions = st.builds(
    Transaction,
    appid=st.just(APPID),
    mchid=st.just(MCHID),
    out_trade_no=ids,
    trade_state=st.just(TradeState.SUCCESS),
    trade_state_desc=words,
    transaction_id=st.from_regex(r"[0-9]{28}", fullmatch=True),
    trade_type=st.just("NATIVE"),
    bank_type=st.sampled_from(["OTHERS", "CMB_CREDIT"]),
    attach=words,
    success_time=moments,
    payer_openid=st.from_regex(r"o[0-9A-Za-z_\-]{27}", fullmatch=True),
    total=amounts,
    payer_total=amounts,
)
refunds = st.builds(
    Refund,
    out_refund_no=ids,
    refund_id=st.from_regex(r"[0-9]{29}", fullmatch=True),
    status=st.sampled_from([RefundState.SUCCESS, RefundState.CLOSED, RefundState.ABNORMAL]),
    out_trade_no=ids,
    transaction_id=st.from_regex(r"[0-9]{28}", fullmatch=True),
    mchid=st.just(MCHID),
    user_received_account=words,
    success_time=moments,
    total=amounts,
    refund=amounts,
    payer_total=amounts,
    payer_refund=amounts,
)


def deliver(resource: Transaction | Refund, nonce: str) -> tuple[dict[str, str], bytes]:
    body = build_notification(
        resource, KEY, notification_id="EV-1", create_time=datetime(2024, 1, 1, tzinfo=BEIJING),
        nonce=nonce,
    )  # fmt: skip
    headers = sign_response(
        body, serial=PUBLIC_KEY_ID, private_key=rsa_key("wechat"), timestamp=NOW, nonce=nonce
    )
    return headers, body


def trust() -> TrustStore:
    return TrustStore(public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())])


def wechatpayv3_core() -> Core:
    pem = rsa_key("merchant").private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()
    )
    pub = (
        rsa_key("wechat")
        .public_key()
        .public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    )
    return Core(MCHID, "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB", pem.decode(), API_V3_KEY,
                public_key=pub.decode(), public_key_id=PUBLIC_KEY_ID)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    resource=st.one_of(transactions, refunds), nonce=st.from_regex(r"[0-9a-z]{12}", fullmatch=True)
)
def test_round_trip(resource: Transaction | Refund, nonce: str) -> None:
    headers, body = deliver(resource, nonce)
    notice = verify_notification(headers, body, trust(), KEY, now=NOW)
    if isinstance(resource, Transaction):
        assert isinstance(notice, PaymentNotice)
        assert notice.transaction == resource
    else:
        assert isinstance(notice, RefundNotice)
        assert notice.refund == resource
        assert notice.envelope.event_type == f"REFUND.{resource.status.value}"


@settings(max_examples=25, deadline=None)
@given(resource=transactions, nonce=st.from_regex(r"[0-9a-z]{12}", fullmatch=True))
def test_wechatpayv3_opens_scanpay_notifications(resource: Transaction, nonce: str) -> None:
    headers, body = deliver(resource, nonce)
    opened = wechatpayv3_core().callback(headers, body.decode())
    assert opened is not None
    assert opened["resource"] == json.loads(json.dumps(resource.to_json()))
    assert opened["resource"]["amount"]["total"] == resource.total


def test_starlette_headers_are_read_with_repeats() -> None:
    headers, _ = deliver(
        next(iter([Transaction(APPID, MCHID, "order_1", TradeState.SUCCESS)])), "abcdefghijkl"
    )
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    assert read_signed_headers(Headers(raw=raw)).serial == PUBLIC_KEY_ID
    with pytest.raises(MalformedMessageError):
        read_signed_headers(Headers(raw=[*raw, (b"wechatpay-serial", b"PUB_KEY_ID_2")]))
