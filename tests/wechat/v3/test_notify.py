"""Notifications and /v3/certificates: build (simulator side) and open (merchant side)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanpay.errors import (
    ConfigurationError,
    DecryptionError,
    MalformedMessageError,
    SignatureError,
    StaleMessageError,
    UnknownKeyError,
)
from scanpay.wechat.fields import BEIJING
from scanpay.wechat.keys import TrustStore, certificate_serial
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import RefundState, TradeState
from scanpay.wechat.v3.aead import EncryptedResource, decrypt_resource, encrypt_resource
from scanpay.wechat.v3.certificates import build_certificates, parse_certificates
from scanpay.wechat.v3.notify import (
    PaymentNotice,
    RefundNotice,
    build_notification,
    verify_notification,
)
from scanpay.wechat.v3.refunds import Refund
from scanpay.wechat.v3.transactions import Transaction
from scanpay.wechat.v3.verify import sign_response
from tests.wechat.v3.factories import (
    API_V3_KEY,
    APPID,
    MCHID,
    NOW,
    PUBLIC_KEY_ID,
    platform_certificate,
    rsa_key,
)

KEY = Secret(API_V3_KEY)
PAID = Transaction(
    appid=APPID,
    mchid=MCHID,
    out_trade_no="order_000001",
    trade_state=TradeState.SUCCESS,
    trade_state_desc="支付成功",
    transaction_id="4200000000202401010000000001",
    trade_type="NATIVE",
    bank_type="OTHERS",
    attach="cart=7",
    success_time=datetime(2024, 1, 1, 12, 0, 5, tzinfo=BEIJING),
    payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    total=100,
    payer_total=100,
)
REFUNDED = Refund(
    out_refund_no="refund_1",
    refund_id="50200207182018070300011301001",
    status=RefundState.SUCCESS,
    out_trade_no="order_000001",
    transaction_id="4200000000202401010000000001",
    mchid=MCHID,
    user_received_account="支付用户零钱",
    success_time=datetime(2024, 1, 2, 8, 0, tzinfo=BEIJING),
    total=100,
    refund=40,
    payer_total=100,
    payer_refund=40,
)


def trust() -> TrustStore:
    return TrustStore(public_keys=[(PUBLIC_KEY_ID, rsa_key("wechat").public_key())])


def deliver(resource: Transaction | Refund, *, ts: int = NOW) -> tuple[dict[str, str], bytes]:
    body = build_notification(
        resource,
        KEY,
        notification_id="EV-2018022511223320873",
        create_time=datetime(2024, 1, 1, 12, 0, 6, tzinfo=BEIJING),
        nonce="fGd3sq8aPbXy",
    )
    headers = sign_response(
        body, serial=PUBLIC_KEY_ID, private_key=rsa_key("wechat"), timestamp=ts, nonce="n"
    )
    return headers, body


def test_payment_notification_round_trip() -> None:
    headers, body = deliver(PAID)
    notice = verify_notification(headers, body, trust(), KEY, now=NOW)
    assert isinstance(notice, PaymentNotice)
    assert notice.transaction == PAID
    assert notice.envelope.event_type == "TRANSACTION.SUCCESS"
    assert notice.envelope.resource.associated_data == "transaction"


def test_refund_notification_round_trip() -> None:
    headers, body = deliver(REFUNDED)
    notice = verify_notification(headers, body, trust(), KEY, now=NOW)
    assert isinstance(notice, RefundNotice)
    assert notice.refund == REFUNDED
    assert notice.envelope.event_type == "REFUND.SUCCESS"
    resource = json.loads(body)["resource"]
    plain = json.loads(decrypt_resource(EncryptedResource.from_json(resource), KEY))
    assert plain["refund_status"] == "SUCCESS"
    assert "status" not in plain


def test_official_refund_plaintext_parses() -> None:
    plain = (
        '{"mchid":"1900000100","transaction_id":"1008450740201411110005820873",'
        '"out_trade_no":"20150806125346","refund_id":"50200207182018070300011301001",'
        '"out_refund_no":"7752501201407033233368018","refund_status":"SUCCESS",'
        '"success_time":"2018-06-08T10:34:56+08:00","user_received_account":"招商银行信用卡0403",'
        '"amount":{"total":999,"refund":999,"payer_total":999,"payer_refund":999}}'
    ).encode()
    encrypted = encrypt_resource(plain, KEY, nonce="abcdefghijkl", associated_data="refund")
    envelope = {
        "id": "EV-1",
        "create_time": "2018-06-08T10:34:56+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "REFUND.SUCCESS",
        "summary": "退款成功",
        "resource": {**encrypted.to_json(), "original_type": "refund"},
    }
    body = json.dumps(envelope).encode()
    headers = sign_response(
        body, serial=PUBLIC_KEY_ID, private_key=rsa_key("wechat"), timestamp=NOW, nonce="x"
    )
    notice = verify_notification(headers, body, trust(), KEY, now=NOW)
    assert isinstance(notice, RefundNotice)
    assert notice.refund.refund == 999
    assert notice.refund.status is RefundState.SUCCESS


def _resign(body: bytes) -> tuple[dict[str, str], bytes]:
    return sign_response(
        body, serial=PUBLIC_KEY_ID, private_key=rsa_key("wechat"), timestamp=NOW, nonce="n"
    ), body


def _mutate_resource(**changes: str) -> tuple[dict[str, str], bytes]:
    data = json.loads(deliver(PAID)[1])
    data["resource"].update(changes)
    return _resign(json.dumps(data, ensure_ascii=False).encode())


def _flip_ciphertext(index: int) -> tuple[dict[str, str], bytes]:
    import base64

    data = json.loads(deliver(PAID)[1])
    raw = bytearray(base64.b64decode(data["resource"]["ciphertext"]))
    raw[index] ^= 1
    data["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    return _resign(json.dumps(data, ensure_ascii=False).encode())


def _tampered_body() -> tuple[dict[str, str], bytes]:
    headers, body = deliver(PAID)
    return headers, body.replace(b"EV-2018", b"EV-2019")


HOSTILE: list[tuple[str, tuple[dict[str, str], bytes], type[Exception]]] = [
    ("malformed json", _resign(b'{"id": "EV-1", '), MalformedMessageError),
    ("json array", _resign(b"[]"), MalformedMessageError),
    ("envelope lacks fields", _resign(b'{"id":"a","id":"b"}'), MalformedMessageError),
    ("NaN", _resign(b'{"id":NaN}'), MalformedMessageError),
    ("not utf-8", _resign(b'{"id":"\xff"}'), MalformedMessageError),
    ("tampered body", _tampered_body(), SignatureError),
    ("stale", deliver(PAID, ts=NOW - 400), StaleMessageError),
    ("future", deliver(PAID, ts=NOW + 400), StaleMessageError),
    ("other algorithm", _mutate_resource(algorithm="AEAD_SM4_GCM"), MalformedMessageError),
    ("tampered ciphertext", _flip_ciphertext(0), DecryptionError),
    ("tampered tag", _flip_ciphertext(-1), DecryptionError),
    ("wrong aad", _mutate_resource(associated_data="refund"), DecryptionError),
    ("short nonce", _mutate_resource(nonce="abc"), DecryptionError),
    ("ciphertext not base64", _mutate_resource(ciphertext="%%%"), DecryptionError),
    (
        "unknown event",
        _resign(deliver(PAID)[1].replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.FAILED")),
        MalformedMessageError,
    ),
]


@pytest.mark.parametrize(("case", "error"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_notifications(case: tuple[dict[str, str], bytes], error: type[Exception]) -> None:
    headers, body = case
    with pytest.raises(error) as info:
        verify_notification(headers, body, trust(), KEY, now=NOW)
    assert type(info.value) is error


def test_duplicate_keys_in_a_verified_envelope_last_one_wins() -> None:
    """Duplicate JSON keys are refused by parse_json, but not in bytes already verified as
    WeChat Pay's (scanpay.wechat.v3.jsonbody.parse_authenticated_json says why): re-signed,
    such an envelope is read with the last value; unsigned, it never reaches the parser."""
    body = deliver(PAID)[1]
    doubled = body.replace(b'{"id":"EV-', b'{"id":"first","id":"EV-', 1)
    assert doubled != body
    notice = verify_notification(*_resign(doubled), trust(), KEY, now=NOW)
    assert isinstance(notice, PaymentNotice)
    assert notice.envelope.id.startswith("EV-")
    with pytest.raises(SignatureError):
        verify_notification(deliver(PAID)[0], doubled, trust(), KEY, now=NOW)


def test_unknown_serial_and_wrong_key() -> None:
    headers, body = deliver(PAID)
    with pytest.raises(UnknownKeyError):
        verify_notification(headers, body, TrustStore(), KEY, now=NOW)
    with pytest.raises(DecryptionError):
        verify_notification(headers, body, trust(), Secret("X" * 32), now=NOW)
    with pytest.raises(ConfigurationError):
        verify_notification(headers, body, trust(), Secret("short"), now=NOW)


@settings(max_examples=50, deadline=None)
@given(
    plaintext=st.binary(max_size=300),
    nonce=st.from_regex(r"[0-9A-Za-z]{12}", fullmatch=True),
    aad=st.text(max_size=16),
)
def test_resource_round_trip(plaintext: bytes, nonce: str, aad: str) -> None:
    resource = encrypt_resource(plaintext, KEY, nonce=nonce, associated_data=aad)
    assert decrypt_resource(EncryptedResource.from_json(resource.to_json()), KEY) == plaintext


def test_certificates_round_trip_and_serial_check() -> None:
    certs = [platform_certificate("platform", 0x5157F09EFDC096DE15EBE81A47057A7232F1B8E1),
             platform_certificate("platform2", 0x1234)]  # fmt: skip
    body = build_certificates(certs, KEY, nonces=["61f9c719728a", "61f9c719728b"])
    opened = parse_certificates(body, KEY)
    assert [certificate_serial(c) for c in opened] == [
        "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        "0000000000000000000000000000000000001234",
    ]
    data = json.loads(body)
    data["data"][1]["serial_no"] = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
    with pytest.raises(MalformedMessageError):
        parse_certificates(json.dumps(data).encode(), KEY)
    with pytest.raises(DecryptionError):
        parse_certificates(body, Secret("Y" * 32))
