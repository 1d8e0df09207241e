"""The v2 envelope: error mapping, sign-type rules, payment notifications, hostile answers."""

from __future__ import annotations

import pytest

from scanpay.errors import (
    ApiError,
    MalformedMessageError,
    RetryableApiError,
    SignatureError,
)
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v2.envelope import (
    V2Merchant,
    api_error,
    business_failure,
    decode_request,
    decode_response,
    encode_failure,
    encode_request,
    encode_response,
    return_fail_code,
)
from scanpay.wechat.v2.notify import build_payment_notification, verify_payment_notification
from scanpay.wechat.v2.sign import sign_v2
from scanpay.wechat.xmlcodec import dump_xml

KEY = Secret("192006250b4c09247ec02edce69f6a2d")
MD5 = V2Merchant(appid="wxd930ea5d5a258f4f", mch_id="10000100", key=KEY)
HMAC = V2Merchant(
    appid="wxd930ea5d5a258f4f", mch_id="10000100", key=KEY, sign_type=SignType.HMAC_SHA256
)
OK = {"appid": MD5.appid, "mch_id": MD5.mch_id, "result_code": "SUCCESS", "code_url": "weixin://x"}


@pytest.mark.parametrize("merchant", [MD5, HMAC])
def test_response_verified_with_the_request_type(merchant: V2Merchant) -> None:
    body = encode_response(OK, KEY, merchant.sign_type, nonce="n")
    assert decode_response(body, merchant)["code_url"] == "weixin://x"


def test_response_in_the_other_sign_type_is_refused() -> None:
    with pytest.raises(SignatureError):
        decode_response(encode_response(OK, KEY, SignType.HMAC_SHA256, nonce="n"), MD5)
    # an MD5 signature on the answer to an HMAC request: no sign_type field, wrong algorithm
    with pytest.raises(SignatureError):
        decode_response(encode_response(OK, KEY, SignType.MD5, nonce="n"), HMAC)


def test_tampered_missing_and_wrong_key_signatures() -> None:
    body = encode_response(OK, KEY, SignType.MD5, nonce="n")
    with pytest.raises(SignatureError):
        decode_response(body.replace(b"weixin://x", b"weixin://y"), MD5)
    with pytest.raises(SignatureError):
        decode_response(dump_xml({"return_code": "SUCCESS", **OK}), MD5)
    other = V2Merchant(appid=MD5.appid, mch_id=MD5.mch_id, key=Secret("b" * 32))
    with pytest.raises(SignatureError):
        decode_response(body, other)


def test_answer_for_another_merchant_is_refused() -> None:
    body = encode_response({**OK, "mch_id": "999"}, KEY, SignType.MD5, nonce="n")
    with pytest.raises(MalformedMessageError):
        decode_response(body, MD5)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("SYSTEMERROR", True),
        ("BIZERR_NEED_RETRY", True),
        ("FREQUENCY_LIMITED", True),
        ("ORDERPAID", False),
        ("REFUNDNOTEXIST", False),
        ("NOTENOUGH", False),
    ],
)
def test_err_code_maps_to_typed_errors(code: str, retryable: bool) -> None:
    body = encode_response({**OK, **business_failure(code, "描述")}, KEY, SignType.MD5, nonce="n")
    with pytest.raises(ApiError) as caught:
        decode_response(body, MD5, http_status=200)
    assert caught.value.code == code
    assert caught.value.message == "描述"
    assert isinstance(caught.value, RetryableApiError) is retryable
    assert isinstance(api_error(code), RetryableApiError) is retryable


def test_business_failure_is_still_verified() -> None:
    body = encode_response({**OK, **business_failure("ORDERPAID")}, KEY, SignType.MD5, nonce="n")
    with pytest.raises(SignatureError):
        decode_response(body.replace(b"ORDERPAID", b"SYSTEMERROR"), MD5)


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ("签名错误", "SIGNERROR"),
        ("XML格式错误", "XML_FORMAT_ERROR"),
        ("SYSTEMERROR", "SYSTEMERROR"),
        ("time_expire时间过短，刷卡至少1分钟，其他5分钟", "RETURN_FAIL"),
    ],
)
def test_return_code_fail_is_an_unsigned_api_error(msg: str, code: str) -> None:
    assert return_fail_code(msg) == code
    with pytest.raises(ApiError) as caught:
        decode_response(encode_failure(msg), MD5)
    assert caught.value.code == code
    assert caught.value.message == msg


@pytest.mark.parametrize(
    "body",
    [
        dump_xml({"return_msg": "no code"}),
        dump_xml({"return_code": "MAYBE"}),
    ],
)
def test_answer_without_a_valid_return_code_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        decode_response(body, MD5)


def test_invalid_result_code_is_malformed() -> None:
    body = encode_response({**OK, "result_code": "PERHAPS"}, KEY, SignType.MD5, nonce="n")
    with pytest.raises(MalformedMessageError):
        decode_response(body, MD5)


def test_request_declaring_an_unknown_sign_type() -> None:
    fields: dict[str, str | int] = {"appid": "a", "mch_id": "m", "sign_type": "SHA1"}
    fields["sign"] = sign_v2(fields, KEY)
    with pytest.raises(MalformedMessageError):
        decode_request(dump_xml(fields), KEY)


def test_errors_never_show_the_key() -> None:
    body = encode_request({"out_trade_no": "SP20240305"}, MD5, nonce="n")
    with pytest.raises(SignatureError) as caught:
        decode_request(body.replace(b"SP2024", b"SP2025"), Secret("c" * 32))
    assert KEY.reveal() not in str(caught.value)
    assert "c" * 32 not in repr(caught.value)
    assert KEY.reveal() not in repr(MD5)


NOTIFY: dict[str, str | int] = {
    "appid": MD5.appid,
    "mch_id": MD5.mch_id,
    "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c",
    "openid": "oUpF8uMEb4qRXf22hE3X68TekukE",
    "out_trade_no": "1409811653",
    "transaction_id": "1004400740201409030005092168",
    "total_fee": 1,
    "trade_type": "NATIVE",
    "time_end": "20140903131540",
    "attach": "支付测试",
    "new_field_added_later": "x",
}


@pytest.mark.parametrize("sign_type", [SignType.MD5, SignType.HMAC_SHA256])
def test_payment_notification_checked_with_its_declared_type(sign_type: SignType) -> None:
    note = verify_payment_notification(build_payment_notification(NOTIFY, KEY, sign_type), KEY)
    assert note.sign_type is sign_type
    assert note.status.trade_state is TradeState.SUCCESS
    assert note.status.total_fee == 1
    assert note.fields["new_field_added_later"] == "x"


def test_payment_notification_hostile() -> None:
    body = build_payment_notification(NOTIFY, KEY, SignType.HMAC_SHA256)
    with pytest.raises(SignatureError):  # claims MD5, carries an HMAC signature
        verify_payment_notification(body.replace(b"HMAC-SHA256", b"MD5"), KEY)
    with pytest.raises(SignatureError):
        verify_payment_notification(body.replace(b"<total_fee>1<", b"<total_fee>100<"), KEY)
    with pytest.raises(SignatureError):
        verify_payment_notification(body, Secret("d" * 32))
    with pytest.raises(MalformedMessageError):
        verify_payment_notification(body.replace(b"HMAC-SHA256", b"RSA"), KEY)
    with pytest.raises(MalformedMessageError):
        verify_payment_notification(body.replace(b"</xml>", b"<total_fee>2</total_fee></xml>"), KEY)
