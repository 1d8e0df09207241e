"""v2 refund and refund query: request rules, both directions through the signed envelope."""

from __future__ import annotations

import pytest

from scanpay.errors import MalformedMessageError
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import RefundState, SignType
from scanpay.wechat.v2.envelope import (
    V2Merchant,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from scanpay.wechat.v2.refunds import (
    RefundItem,
    RefundQuery,
    RefundQueryResult,
    RefundRequest,
    RefundResult,
    RefundStatus,
    parse_refund,
    parse_refund_query,
)

KEY = Secret("192006250b4c09247ec02edce69f6a2d")
MD5 = V2Merchant(appid="wxd930ea5d5a258f4f", mch_id="10000100", key=KEY)
HMAC = V2Merchant(
    appid="wxd930ea5d5a258f4f", mch_id="10000100", key=KEY, sign_type=SignType.HMAC_SHA256
)


def test_refund_request_round_trip_through_the_wire() -> None:
    request = RefundRequest(
        out_trade_no="SP20240305091200a1",
        out_refund_no="RF-20240305@1",
        total_fee=12800,
        refund_fee=2800,
        refund_desc="部分退款",
        notify_url="https://shop.example/notify/refund",
    )
    for merchant in (MD5, HMAC):
        body = encode_request(request.to_fields(), merchant, nonce="nonce1")
        fields, sign_type = decode_request(body, KEY)
        assert sign_type is merchant.sign_type
        assert RefundRequest.from_fields(fields) == request


@pytest.mark.parametrize(
    "kwargs",
    [
        {"out_refund_no": "R1", "total_fee": 100, "refund_fee": 100},  # no order number
        {"out_trade_no": "SP2024", "out_refund_no": "", "total_fee": 1, "refund_fee": 1},
        {"out_trade_no": "SP2024", "out_refund_no": "R#1", "total_fee": 1, "refund_fee": 1},
        {"out_trade_no": "SP2024", "out_refund_no": "R" * 65, "total_fee": 1, "refund_fee": 1},
        {"out_trade_no": "SP2024", "out_refund_no": "R1", "total_fee": 100, "refund_fee": 101},
        {"out_trade_no": "SP2024", "out_refund_no": "R1", "total_fee": 100, "refund_fee": 0},
        {"out_trade_no": "SP2024", "out_refund_no": "R1", "total_fee": 0, "refund_fee": 0},
        {"out_trade_no": "SP2024", "out_refund_no": "R1", "total_fee": 10, "refund_fee": -1},
        {"out_trade_no": "SP2024", "out_refund_no": "R1", "total_fee": 10, "refund_fee": True},
        {"out_trade_no": "bad", "out_refund_no": "R1", "total_fee": 10, "refund_fee": 1},
        {
            "out_trade_no": "SP2024",
            "out_refund_no": "R1",
            "total_fee": 10,
            "refund_fee": 1,
            "refund_desc": "x" * 81,
        },
        {
            "out_trade_no": "SP2024",
            "out_refund_no": "R1",
            "total_fee": 10,
            "refund_fee": 1,
            "notify_url": "https://a.example/n?x=1",
        },
    ],
)
def test_refund_request_rules(kwargs: dict[str, object]) -> None:
    with pytest.raises(MalformedMessageError):
        RefundRequest(**kwargs)  # type: ignore[arg-type]


def test_refund_request_from_fields_refuses_bad_amounts() -> None:
    base = {"out_trade_no": "SP20240305", "out_refund_no": "R1", "total_fee": "10"}
    for refund_fee in ("", "1.5", "-1", "11", "0"):
        with pytest.raises(MalformedMessageError):
            RefundRequest.from_fields({**base, "refund_fee": refund_fee})


def test_transaction_id_alone_is_enough() -> None:
    request = RefundRequest(
        transaction_id="4200002024030512345678901234",
        out_refund_no="R1",
        total_fee=5,
        refund_fee=5,
    )
    assert "out_trade_no" not in request.to_fields()


RESULT = RefundResult(
    transaction_id="4200002024030512345678901234",
    out_trade_no="SP20240305091200a1",
    out_refund_no="RF-20240305@1",
    refund_id="50300408942024030507145868882",
    refund_fee=2800,
    total_fee=12800,
    cash_fee=12800,
    settlement_refund_fee=2800,
)


@pytest.mark.parametrize("merchant", [MD5, HMAC])
def test_refund_response_both_directions(merchant: V2Merchant) -> None:
    body = encode_response(
        {"appid": merchant.appid, "mch_id": merchant.mch_id, **RESULT.to_fields()},
        KEY,
        merchant.sign_type,
        nonce="n2",
    )
    assert parse_refund(decode_response(body, merchant)) == RESULT


def test_refund_response_missing_refund_id_is_malformed() -> None:
    fields = {k: str(v) for k, v in RESULT.to_fields().items() if k != "refund_id"}
    with pytest.raises(MalformedMessageError):
        parse_refund(fields)


QUERY_RESULT = RefundQueryResult(
    transaction_id="4200002024030512345678901234",
    out_trade_no="SP20240305091200a1",
    total_fee=12800,
    cash_fee=12800,
    total_refund_count=2,
    refunds=(
        RefundItem(
            out_refund_no="RF-20240305@1",
            refund_id="50300408942024030507145868882",
            refund_fee=2800,
            refund_status=RefundStatus.SUCCESS,
            refund_channel="ORIGINAL",
            refund_recv_accout="招商银行借记卡1234",
            refund_success_time="2024-03-05 15:30:00",
        ),
        RefundItem(
            out_refund_no="RF-20240306@2",
            refund_id="50300408942024030607145868999",
            refund_fee=1000,
            refund_status=RefundStatus.PROCESSING,
        ),
    ),
)


@pytest.mark.parametrize("merchant", [MD5, HMAC])
def test_refund_query_indexed_fields_both_directions(merchant: V2Merchant) -> None:
    fields = QUERY_RESULT.to_fields()
    assert fields["refund_fee_1"] == 1000
    assert fields["refund_count"] == 2
    body = encode_response(fields, KEY, merchant.sign_type, nonce="n3")
    parsed = parse_refund_query(decode_response(body, merchant))
    assert parsed == QUERY_RESULT
    assert [r.refund_status.state for r in parsed.refunds] == [
        RefundState.SUCCESS,
        RefundState.PROCESSING,
    ]


def test_refund_query_missing_indexed_field_is_malformed() -> None:
    fields = {k: str(v) for k, v in QUERY_RESULT.to_fields().items() if k != "refund_id_1"}
    with pytest.raises(MalformedMessageError):
        parse_refund_query(fields)
    with pytest.raises(MalformedMessageError):
        parse_refund_query({**fields, "refund_count": "51"})
    with pytest.raises(MalformedMessageError):
        parse_refund_query(
            {**{k: str(v) for k, v in QUERY_RESULT.to_fields().items()}, "refund_status_0": "X"}
        )


def test_refund_query_without_refunds() -> None:
    parsed = parse_refund_query(
        {"out_trade_no": "SP20240305", "total_fee": "5", "cash_fee": "5", "refund_count": "0"}
    )
    assert parsed.refunds == ()


def test_refund_query_request_precedence_and_round_trip() -> None:
    query = RefundQuery(out_trade_no="SP20240305", out_refund_no="R1", offset=20)
    assert query.key == ("out_refund_no", "R1")
    body = encode_request(query.to_fields(), HMAC, nonce="n4")
    fields, _ = decode_request(body, KEY)
    assert RefundQuery.from_fields(fields) == query
    with pytest.raises(MalformedMessageError):
        RefundQuery()
    with pytest.raises(MalformedMessageError):
        RefundQuery(out_trade_no="SP20240305", offset=-1)
    with pytest.raises(MalformedMessageError):
        RefundQuery(out_refund_no="R 1")
