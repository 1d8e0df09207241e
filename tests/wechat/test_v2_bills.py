"""v2 ``pay/downloadbill``: request both ways, text / gzip / XML failure answers."""

from __future__ import annotations

import gzip
from datetime import date

import pytest

from scanpay.errors import ApiError, MalformedMessageError, RetryableApiError
from scanpay.wechat.bill import BillRow, build_bill
from scanpay.wechat.secret import Secret
from scanpay.wechat.v2.bills import (
    BillType,
    DownloadBill,
    encode_bill,
    encode_bill_failure,
    parse_bill_response,
    read_bill_response,
)
from scanpay.wechat.v2.envelope import V2Merchant, decode_request, encode_request

KEY = Secret("192006250b4c09247ec02edce69f6a2d")
MERCHANT = V2Merchant(appid="wxd930ea5d5a258f4f", mch_id="10000100", key=KEY)
TEXT = build_bill([BillRow(out_trade_no="SP20240305", settlement_total_fen=199, order_fen=199)])


def test_request_round_trip() -> None:
    request = DownloadBill.for_day(date(2024, 3, 5), BillType.SUCCESS, gzip=True)
    assert request.to_fields() == {
        "bill_date": "20240305",
        "bill_type": "SUCCESS",
        "tar_type": "GZIP",
    }
    fields, _ = decode_request(encode_request(request.to_fields(), MERCHANT, nonce="n"), KEY)
    assert DownloadBill.from_fields(fields) == request
    assert DownloadBill.from_fields({"bill_date": "20240305"}) == DownloadBill("20240305")


@pytest.mark.parametrize(
    "fields",
    [
        {"bill_date": "2024-03-05"},
        {"bill_date": "20240230"},
        {"bill_date": ""},
        {"bill_date": "20240305", "bill_type": "EVERYTHING"},
        {"bill_date": "20240305", "tar_type": "ZIP"},
    ],
)
def test_bad_requests(fields: dict[str, str]) -> None:
    with pytest.raises(MalformedMessageError):
        DownloadBill.from_fields(fields)


def test_plain_and_gzip_answers() -> None:
    assert read_bill_response(encode_bill(TEXT)) == TEXT
    compressed = encode_bill(TEXT, compress=True)
    assert compressed[:2] == b"\x1f\x8b"
    assert compressed == encode_bill(TEXT, compress=True)  # deterministic (mtime 0)
    bill = parse_bill_response(compressed)
    assert bill.summary.settlement_total_fen == 199
    assert bill.rows[0].out_trade_no == "SP20240305"


def test_failure_answer_maps_to_api_error() -> None:
    with pytest.raises(ApiError) as caught:
        read_bill_response(encode_bill_failure("No Bill Exist", "20002"), http_status=200)
    assert caught.value.code == "20002"
    assert caught.value.message == "No Bill Exist"
    assert caught.value.http_status == 200
    with pytest.raises(ApiError) as without_code:
        read_bill_response(encode_bill_failure("Bill Creating"))
    assert without_code.value.code == "RETURN_FAIL"
    with pytest.raises(RetryableApiError):
        read_bill_response(encode_bill_failure("SYSTEMERROR"))


def test_gzip_of_a_failure_is_still_a_failure() -> None:
    with pytest.raises(ApiError):
        read_bill_response(gzip.compress(encode_bill_failure("No Bill Exist")))


@pytest.mark.parametrize(
    "body",
    [
        b"\x1f\x8b\x08\x00broken",
        gzip.compress(TEXT.encode())[:-6],
        "交易时间".encode("gbk"),
        b"<xml><return_code>SUCCESS</return_code></xml>",
        b"<xml><return_code>FAIL</return_code><return_code>FAIL</return_code></xml>",
    ],
)
def test_broken_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        read_bill_response(body)
