"""Request builders, response parsers, error mapping, bills and keys of v3."""

from __future__ import annotations

import gzip
import hashlib
from datetime import date, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from scanpay.errors import (
    ApiError,
    ConfigurationError,
    MalformedMessageError,
    RetryableApiError,
    UnknownKeyError,
)
from scanpay.wechat.bill import ALL_COLUMNS, BillRow, build_bill
from scanpay.wechat.fields import BEIJING
from scanpay.wechat.keys import (
    TrustStore,
    certificate_serial,
    load_certificate,
    load_pkcs12,
    load_private_key,
    load_public_key,
)
from scanpay.wechat.states import RefundState, TradeState
from scanpay.wechat.v3.apierror import error_body, parse_error
from scanpay.wechat.v3.bills import (
    BillDescriptor,
    FundFlowRow,
    FundFlowSummary,
    bill_download_request,
    build_fund_flow_bill,
    fund_flow_bill_from,
    fund_flow_bill_request,
    parse_bill_descriptor,
    parse_trade_bill,
    trade_bill_request,
)
from scanpay.wechat.v3.refunds import (
    Refund,
    RefundApplication,
    create_refund_request,
    parse_refund,
    parse_refund_request,
    query_refund_request,
)
from scanpay.wechat.v3.transactions import (
    NativeOrder,
    Transaction,
    native_prepay_request,
    parse_code_url,
    parse_native_prepay,
    parse_transaction,
    query_by_transaction_id_request,
)
from tests.wechat.v3.factories import APPID, MCHID, PUBLIC_KEY_ID, certificate, rsa_key


def order(**changes: object) -> NativeOrder:
    values: dict[str, object] = {
        "appid": APPID,
        "mchid": MCHID,
        "description": "Coffee",
        "out_trade_no": "order_000001",
        "notify_url": "https://shop.example/notify/v3",
        "total": 1,
        "time_expire": datetime(2024, 1, 1, 12, 30, tzinfo=BEIJING),
        "attach": "x",
    }
    values.update(changes)
    return NativeOrder(**values)  # type: ignore[arg-type]


def test_native_round_trip_through_wire() -> None:
    request = native_prepay_request(order())
    assert b'"time_expire":"2024-01-01T12:30:00+08:00"' in request.body
    assert parse_native_prepay(request.body) == order()


@pytest.mark.parametrize(
    "changes",
    [
        {"out_trade_no": "abc"},
        {"out_trade_no": "a" * 33},
        {"out_trade_no": "bad no!"},
        {"total": 0},
        {"total": -1},
        {"total": True},
        {"description": "x" * 128},
        {"description": "coffee \U0001f600"},
        {"notify_url": "https://shop.example/notify?x=1"},
        {"notify_url": "ftp://shop.example/notify"},
        {"time_expire": datetime(2024, 1, 1)},
    ],
)
def test_native_order_rules(changes: dict[str, object]) -> None:
    with pytest.raises(MalformedMessageError):
        order(**changes)


def test_code_url_and_transaction_parsing() -> None:
    assert parse_code_url(b'{"code_url":"weixin://wxpay/bizpayurl?pr=x"}').startswith("weixin://")
    with pytest.raises(MalformedMessageError):
        parse_code_url(b'{"code_url":"https://evil"}')
    notpay = parse_transaction(
        b'{"appid":"wx1","mchid":"1","out_trade_no":"order_1","trade_state":"NOTPAY",'
        b'"trade_state_desc":"\xe6\x9c\xaa\xe6\x94\xaf\xe4\xbb\x98","amount":{"total":5}}'
    )
    assert notpay.trade_state is TradeState.NOTPAY
    assert notpay.total == 5
    assert notpay.success_time is None
    with pytest.raises(MalformedMessageError):
        parse_transaction(b'{"appid":"wx1","mchid":"1","out_trade_no":"o","trade_state":"WAT"}')
    paid = Transaction(APPID, MCHID, "order_1", TradeState.SUCCESS, total=3, payer_total=3)
    from scanpay.wechat.v3.jsonbody import dump_json

    assert parse_transaction(dump_json(paid.to_json())) == paid


def test_query_paths() -> None:
    assert query_by_transaction_id_request("4200000001", MCHID).url == (
        "/v3/pay/transactions/id/4200000001?mchid=1900007291"
    )
    with pytest.raises(MalformedMessageError):
        query_by_transaction_id_request("../x", MCHID)
    from scanpay.wechat.v3.transactions import query_by_out_trade_no_request

    assert "order%7C1" in query_by_out_trade_no_request("order|1", MCHID).url


def test_refund_round_trip() -> None:
    application = RefundApplication("refund_1", 40, 100, out_trade_no="order_000001", reason="r")
    request = create_refund_request(application)
    assert parse_refund_request(request.body) == application
    assert query_refund_request("refund_1").url == "/v3/refund/domestic/refunds/refund_1"
    with pytest.raises(MalformedMessageError):
        RefundApplication("refund_1", 101, 100, out_trade_no="order_000001")
    with pytest.raises(MalformedMessageError):
        RefundApplication("refund_1", 1, 100)
    refund = Refund("refund_1", "5020", RefundState.PROCESSING, total=100, refund=40)
    from scanpay.wechat.v3.jsonbody import dump_json

    assert parse_refund(dump_json(refund.to_json())) == refund


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (404, b'{"code":"ORDERNOTEXIST","message":"gone"}', ApiError, "ORDER_NOT_EXIST"),
        (404, b'{"code":"ORDER_NOT_EXIST","message":"gone"}', ApiError, "ORDER_NOT_EXIST"),
        (500, b'{"code":"SYSTEMERROR","message":"x"}', RetryableApiError, "SYSTEM_ERROR"),
        (
            429,
            b'{"code":"FREQUENCY_LIMITED","message":"x"}',
            RetryableApiError,
            "FREQUENCY_LIMITED",
        ),
        (502, b"<html>bad gateway</html>", RetryableApiError, "HTTP_502"),
        (
            400,
            b'{"code":"PARAM_ERROR","message":"x","detail":{"field":"amount"}}',
            ApiError,
            "PARAM_ERROR",
        ),
        (403, b'{"code":"NOTENOUGH"}', ApiError, "NOT_ENOUGH"),
    ],
)
def test_error_mapping(status: int, body: bytes, cls: type[ApiError], code: str) -> None:
    error = parse_error(status, body, "08F78BB5-1234")
    assert type(error) is cls
    assert error.code == code
    assert error.http_status == status
    assert str(error).startswith("[08F78BB5-1234] ")


def test_error_body_round_trip() -> None:
    error = parse_error(400, error_body("ORDER_CLOSED", "closed"), None)
    assert (error.code, error.message) == ("ORDER_CLOSED", "closed")


def test_bill_requests_and_descriptor() -> None:
    assert trade_bill_request(date(2024, 1, 2), gzip=True).url == (
        "/v3/bill/tradebill?bill_date=2024-01-02&bill_type=ALL&tar_type=GZIP"
    )
    assert fund_flow_bill_request(date(2024, 1, 2)).url == (
        "/v3/bill/fundflowbill?bill_date=2024-01-02&account_type=BASIC"
    )
    descriptor = parse_bill_descriptor(
        BillDescriptor(
            "https://api.mch.weixin.qq.com/v3/billdownload/file?token=abc", "00" * 20
        ).to_json()
    )
    download = bill_download_request(descriptor)
    assert download.url == "/v3/billdownload/file?token=abc"
    assert not download.signed_response


def _row() -> BillRow:
    return BillRow(
        trade_time="2024-01-01 12:00:05", appid=APPID, mch_id=MCHID,
        transaction_id="4200000001", out_trade_no="order_000001", openid="o1",
        trade_type="NATIVE", trade_state="SUCCESS", bank_type="OTHERS", fee_type="CNY",
        settlement_total_fen=100, body="Coffee, large", fee_fen=1, rate="0.60%", order_fen=100,
        refund_id="0", out_refund_no="0", refund_type="", refund_status="",
    )  # fmt: skip


@pytest.mark.parametrize("compress", [False, True])
def test_trade_bill_download_check_and_parse(compress: bool) -> None:
    text = build_bill([_row()], header=ALL_COLUMNS).encode()
    content = gzip.compress(text, mtime=0) if compress else text
    descriptor = BillDescriptor(
        "https://x/v3/billdownload/file?t=1", hashlib.sha1(content).hexdigest()
    )
    bill = parse_trade_bill(content, descriptor)
    assert bill.rows[0].body == "Coffee, large"
    assert bill.summary.trade_count == 1
    assert bill.summary.settlement_total_fen == 100
    with pytest.raises(MalformedMessageError):
        parse_trade_bill(content + b"\n", descriptor)


def test_gzip_bomb_and_corrupt_gzip() -> None:
    bomb = gzip.compress(b"0" * (65 * 1024 * 1024), mtime=0)
    with pytest.raises(MalformedMessageError):
        parse_trade_bill(bomb, BillDescriptor("https://x/f", hashlib.sha1(bomb).hexdigest()))
    broken = b"\x1f\x8b" + b"garbage"
    with pytest.raises(MalformedMessageError):
        parse_trade_bill(broken, BillDescriptor("https://x/f", hashlib.sha1(broken).hexdigest()))


def test_fund_flow_bill_round_trip() -> None:
    rows = [FundFlowRow("2024-01-01 12:00:05", "4200000001", "1900000001", "交易", "交易",
                        "收入", 100, 100, "system", "", "4200000001")]  # fmt: skip
    summary = FundFlowSummary(1, 1, 100, 0, 0)
    content = build_fund_flow_bill(rows, summary).encode()
    bill = fund_flow_bill_from(
        content, BillDescriptor("https://x/f", hashlib.sha1(content).hexdigest())
    )
    assert bill.rows == tuple(rows)
    assert bill.summary == summary


def test_keys_loading_and_trust_store() -> None:
    key = rsa_key("merchant")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert load_private_key(pem).private_numbers() == key.private_numbers()
    bare = b"".join(pem.splitlines()[1:-1])
    assert load_private_key(bare).private_numbers() == key.private_numbers()
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_public_key(pub.decode()).public_numbers() == key.public_key().public_numbers()
    cert = certificate(key, 0xABC)
    assert certificate_serial(load_certificate(cert.public_bytes(serialization.Encoding.PEM))) == (
        "0" * 37 + "ABC"
    )
    p12 = pkcs12.serialize_key_and_certificates(
        b"x", key, cert, None, serialization.BestAvailableEncryption(b"1900007291")
    )
    assert certificate_serial(load_pkcs12(p12, b"1900007291")[1]) == certificate_serial(cert)
    with pytest.raises(ConfigurationError):
        load_pkcs12(p12, b"wrong")
    with pytest.raises(ConfigurationError):
        load_private_key("not a key")
    trust = TrustStore(public_keys=[(PUBLIC_KEY_ID, key.public_key())], certificates=[cert])
    assert trust.preferred_serial() == PUBLIC_KEY_ID
    assert "abc" in trust
    assert trust.lookup("0abc") is not None
    with pytest.raises(UnknownKeyError):
        trust.lookup("PUB_KEY_ID_0000")
    with pytest.raises(ConfigurationError):
        trust.add_public_key("not-an-id", key.public_key())
    assert "PRIVATE" not in repr(trust)
    assert TrustStore(certificates=[cert]).preferred_serial() == certificate_serial(cert)
