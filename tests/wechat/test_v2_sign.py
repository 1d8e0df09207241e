"""API v2 signatures against the official vectors (PROTOCOL.md 5.1.1, 5.1.2, 5.4.1)."""

from __future__ import annotations

import pytest

from scanpay.errors import MalformedMessageError, SignatureError
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.sign import sign_v2, signing_string, verify_v2

KEY = Secret("192006250b4c09247ec02edce69f6a2d")
OFFICIAL = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}


def test_official_example_string() -> None:
    assert signing_string(OFFICIAL, KEY) == (
        b"appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100"
        b"&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
    )


def test_official_example_md5() -> None:
    assert sign_v2(OFFICIAL, KEY) == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_official_example_hmac() -> None:
    assert sign_v2(OFFICIAL, KEY, SignType.HMAC_SHA256) == (
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    )


def test_wechatpy_unit_vector() -> None:
    assert sign_v2({"test1": "test1", "test2": "test2"}, KEY) == "1E3A8D73B5A4AEE787C0F68B5DAB8520"


NATIVE = {
    "appid": "wxd930ea5d5a258f4f",
    "body": "test",
    "mch_id": "10000100",
    "nonce_str": "ibuaiVcKdpRxkhJA",
    "notify_url": "https://example.com/wxpay/notify",
    "out_trade_no": "20150806125346",
    "product_id": "12235413214070356458058",
    "spbill_create_ip": "123.12.12.123",
    "total_fee": "1",
    "trade_type": "NATIVE",
    "attach": "",
}


def test_derived_native_vectors() -> None:
    assert sign_v2(NATIVE, KEY) == "E9C19FBF2469991508C7C376E2EE4EF4"
    with_type = {**NATIVE, "sign_type": "HMAC-SHA256"}
    assert sign_v2(with_type, KEY, SignType.HMAC_SHA256) == (
        "8A1D6EB21D75F4CC22B2C2F9BD113D3FE1DDC11DCBDAB02A771E5596D63B76D0"
    )


def test_verify_uses_declared_type() -> None:
    fields = {**NATIVE, "sign_type": "HMAC-SHA256"}
    fields["sign"] = sign_v2(fields, KEY, SignType.HMAC_SHA256)
    assert verify_v2(fields, KEY) is SignType.HMAC_SHA256
    with pytest.raises(SignatureError):
        verify_v2(fields, KEY, expected=SignType.MD5)


def test_verify_rejects_tampering_and_wrong_key() -> None:
    fields = {**NATIVE, "sign": sign_v2(NATIVE, KEY)}
    assert verify_v2(fields, KEY) is SignType.MD5
    with pytest.raises(SignatureError):
        verify_v2({**fields, "total_fee": "2"}, KEY)
    with pytest.raises(SignatureError):
        verify_v2(fields, Secret("0" * 32))
    with pytest.raises(SignatureError):
        verify_v2({k: v for k, v in fields.items() if k != "sign"}, KEY)
    with pytest.raises(MalformedMessageError):
        verify_v2({**fields, "sign_type": "SHA1"}, KEY)


def test_secret_never_shows() -> None:
    assert "1920" not in repr(KEY)
    assert "1920" not in str(KEY)
    assert "1920" not in f"{KEY}"
