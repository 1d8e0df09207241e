"""scanpay.wechat.bill: a hand-made ALL bill, totals, round trips, refusals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanpay.errors import MalformedMessageError
from scanpay.wechat.bill import (
    ALL_COLUMNS,
    SUMMARY_COLUMNS,
    BillRow,
    BillSummary,
    build_bill,
    parse_bill,
    summarize,
)
from scanpay.wechat.fields import fen_to_yuan, yuan_to_fen

HEADER = ",".join(ALL_COLUMNS)
# Four lines of one day at a made-up shop: two Native payments (one with a coupon), a refund
# of part of the first, and a product name holding a comma.
ROWS = [
    "`2024-03-05 09:12:44,`wx8888888888888888,`1900000109,`0,`WEB,`4200002024030512345678901234,"
    "`SP20240305091200a1,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`CMB_DEBIT,`CNY,`128.00,"
    "`0.00,`0,`0,`0.00,`0.00,`,`,`Scanpay 演示店-咖啡豆 1kg,`order-77,`0.77000,`0.60%,"
    "`128.00,`0.00,`",
    "`2024-03-05 10:01:02,`wx8888888888888888,`1900000109,`0,`WEB,`4200002024030512345678905678,"
    "`SP20240305100100b2,`oUpF8uN2Xs9kQ1_zs8Qk0ypqy9Ew,`NATIVE,`SUCCESS,`OTHERS,`CNY,`45.50,"
    "`4.50,`0,`0,`0.00,`0.00,`,`,`Tea, green (250g),`,`0.27000,`0.60%,`50.00,`0.00,`",
    "`2024-03-05 15:30:00,`wx8888888888888888,`1900000109,`0,`WEB,`4200002024030512345678901234,"
    "`SP20240305091200a1,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,`CMB_DEBIT,`CNY,`0.00,"
    "`0.00,`50300408942024030507145868882,`RF20240305a1,`28.00,`0.00,`ORIGINAL,`SUCCESS,"
    "`Scanpay 演示店-咖啡豆 1kg,`order-77,`-0.17000,`0.60%,`0.00,`28.00,`",
]
SUMMARY = "`3,`173.50,`28.00,`0.00,`0.87,`178.00,`28.00"
ALL_BILL = "\n".join([HEADER, *ROWS, ",".join(SUMMARY_COLUMNS), SUMMARY]) + "\n"


def test_parse_hand_made_all_bill() -> None:
    bill = parse_bill(ALL_BILL)
    assert bill.header == ALL_COLUMNS
    assert len(bill.rows) == 3
    first, second, refund = bill.rows
    assert first.out_trade_no == "SP20240305091200a1"
    assert first.settlement_total_fen == 12800
    assert first.fee_fen == 77
    assert first.rate == "0.60%"
    assert first.body == "Scanpay 演示店-咖啡豆 1kg"
    assert first.attach == "order-77"
    assert first.rate_note == ""
    assert second.body == "Tea, green (250g)"  # the comma inside the value survives
    assert second.coupon_fen == 450
    assert second.order_fen == 5000
    assert refund.trade_state == "REFUND"
    assert refund.refund_fen == 2800
    assert refund.requested_refund_fen == 2800
    assert refund.fee_fen == -17
    assert refund.refund_id == "50300408942024030507145868882"
    assert refund.columns["退款类型"] == "ORIGINAL"
    assert bill.summary == BillSummary(
        trade_count=3,
        settlement_total_fen=17350,
        refund_total_fen=2800,
        coupon_refund_total_fen=0,
        fee_total_fen=87,
        order_total_fen=17800,
        requested_refund_total_fen=2800,
    )
    assert summarize(bill.rows) == bill.summary


def test_build_reproduces_the_text() -> None:
    bill = parse_bill(ALL_BILL)
    assert build_bill(bill.rows) == ALL_BILL
    assert parse_bill(build_bill(bill.rows)) == bill


def test_windows_line_ends_bom_and_count_with_decimal() -> None:
    text = "\ufeff" + ALL_BILL.replace("\n", "\r\n").replace("`3,`173.50", "`3.0,`173.5")
    bill = parse_bill(text)
    assert bill.summary.trade_count == 3
    assert bill.summary.settlement_total_fen == 17350


def test_empty_day_has_only_the_summary() -> None:
    bill = parse_bill(build_bill([]))
    assert bill.rows == ()
    assert bill.summary == BillSummary(0, 0, 0, 0, 0, 0, 0)


def test_other_bill_types_keep_their_columns() -> None:
    header = ("交易时间", "商户订单号", "应结订单金额", "新列")
    text = build_bill(
        [BillRow(out_trade_no="A123456", settlement_total_fen=5, columns={"新列": "x"})],
        header=header,
    )
    row = parse_bill(text).rows[0]
    assert row.settlement_total_fen == 5
    assert row.columns["新列"] == "x"
    assert row.refund_fen == 0


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        (HEADER + "\n", "no summary"),
        (ALL_BILL.replace(ROWS[0], ROWS[0].replace("`128.00", "`12.8.0", 1)), "bad amount"),
        (ALL_BILL.replace(ROWS[0], ROWS[0].replace("`128.00", "`128.005", 1)), "fraction of fen"),
        (ALL_BILL.replace(ROWS[0], ROWS[0][1:]), "no back-tick"),
        (ALL_BILL.replace(ROWS[0], ROWS[0] + ",`extra"), "too many fields"),
        (ALL_BILL.replace(SUMMARY, "`3,`173.50"), "short summary"),
        (ALL_BILL.replace(SUMMARY, "`3.5,`173.50,`28.00,`0.00,`0.87,`178.00,`28.00"), "count"),
        (ALL_BILL.replace("总交易单数", "合计"), "no summary header"),
        (ALL_BILL.replace("商户号,", "商户订单号,", 1), "repeated column"),
        (ALL_BILL.replace("`128.00", "`1e3", 1), "exponent"),
    ],
)
def test_refuses_broken_bills(text: str, why: str) -> None:
    with pytest.raises(MalformedMessageError):
        parse_bill(text)


def test_build_refuses_values_that_would_break_rows() -> None:
    with pytest.raises(MalformedMessageError):
        build_bill([BillRow(body="a,`b")])


def test_yuan_conversion_is_exact() -> None:
    assert yuan_to_fen("0.01") == 1
    assert yuan_to_fen("19.99") == 1999
    assert yuan_to_fen("0.10000") == 10
    assert yuan_to_fen("-0.17") == -17
    assert yuan_to_fen("1") == 100
    assert fen_to_yuan(1999) == "19.99"
    assert fen_to_yuan(-17, 5) == "-0.17000"
    for bad in ("", " 1.00", "1.", ".5", "+1", "1,00", "NaN", "0.001"):
        with pytest.raises(MalformedMessageError):
            yuan_to_fen(bad)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(10**11), max_value=10**11), st.integers(min_value=2, max_value=6))
def test_fen_yuan_round_trip(fen: int, places: int) -> None:
    assert yuan_to_fen(fen_to_yuan(fen, places)) == fen


_text = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="`,"), max_size=20
)
_fen = st.integers(min_value=0, max_value=10**9)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.builds(
            BillRow,
            out_trade_no=_text,
            body=_text,
            attach=_text,
            settlement_total_fen=_fen,
            refund_fen=_fen,
            fee_fen=_fen,
            order_fen=_fen,
        ),
        max_size=5,
    )
)
def test_build_parse_round_trip(rows: list[BillRow]) -> None:
    bill = parse_bill(build_bill(rows))
    assert len(bill.rows) == len(rows)
    for parsed, original in zip(bill.rows, rows, strict=True):
        assert parsed.out_trade_no == original.out_trade_no
        assert parsed.body == original.body
        assert parsed.settlement_total_fen == original.settlement_total_fen
        assert parsed.fee_fen == original.fee_fen
    assert bill.summary == summarize(rows)
