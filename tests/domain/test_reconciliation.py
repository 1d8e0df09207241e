"""Matching a day's bill rows against the ledger, case by case (pure: an in-memory ledger)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import date

import pytest

from scanpay.domain.reconciliation import (
    DifferenceKind,
    DifferenceState,
    Entry,
    LedgerWindow,
    LocalPayment,
    LocalRefund,
    classify_candidates,
    hold_until,
    match_bill,
)
from scanpay.errors import MalformedMessageError
from scanpay.wechat.bill import BillRow, BillSummary

DAY = date(2025, 3, 1)
NEXT = date(2025, 3, 2)


class Ledger:
    """Everything the shop has, whatever the day (what the store's lookups read)."""

    def __init__(self, payments: list[LocalPayment], refunds: list[LocalRefund]) -> None:
        self.all_payments = {p.out_trade_no: p for p in payments}
        self.all_refunds = {r.out_refund_no: r for r in refunds}

    def payments(self, numbers: Collection[str]) -> Mapping[str, LocalPayment]:
        return {n: self.all_payments[n] for n in numbers if n in self.all_payments}

    def refunds(self, numbers: Collection[str]) -> Mapping[str, LocalRefund]:
        return {n: self.all_refunds[n] for n in numbers if n in self.all_refunds}

    def window(self, *days: date) -> LedgerWindow:
        return LedgerWindow(
            {n: p for n, p in self.all_payments.items() if p.status == "paid"
             and p.local_day in days},
            {n: r for n, r in self.all_refunds.items() if r.status == "success"
             and r.local_day in days},
        )  # fmt: skip


def paid(number: str, amount: int = 100, day: date = DAY, **kw: str) -> LocalPayment:
    values = {"transaction_id": f"42{number}", "status": "paid"} | kw
    return LocalPayment(number, values["transaction_id"], amount, values["status"], "ord_1", day)


def refunded(number: str, of: str, amount: int = 50, status: str = "success") -> LocalRefund:
    return LocalRefund(number, of, amount, status, "ord_1", DAY)


def row(number: str, amount: int = 100, **kw: object) -> BillRow:
    base = BillRow(
        out_trade_no=number, transaction_id=f"42{number}", trade_state="SUCCESS",
        settlement_total_fen=amount, order_fen=amount, out_refund_no="0", refund_id="0",
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def refund_row(number: str, of: str, amount: int = 50, status: str = "SUCCESS") -> BillRow:
    return replace(
        row(of, 0), trade_state="REFUND", out_refund_no=number, refund_id="50" + number,
        refund_fen=amount, requested_refund_fen=amount, refund_status=status,
    )  # fmt: skip


def run(ledger: Ledger, rows: list[BillRow]) -> set[tuple[str, str, str]]:
    result = match_bill(DAY, rows, ledger.window(DAY, NEXT), ledger, check_summary=False)
    found = {d.key for d in result.differences}
    return found | {d.key for d in result.candidates}


def test_a_bill_that_agrees_has_no_differences() -> None:
    ledger = Ledger([paid("a1"), paid("a2", 300)], [refunded("a1r", "a1")])
    rows = [row("a1"), row("a2", 300), refund_row("a1r", "a1")]
    result = match_bill(DAY, rows, ledger.window(DAY), ledger, check_summary=False)
    assert result.differences == []
    assert result.candidates == []
    assert (result.bill.payments, result.bill.payment_amount) == (2, 400)
    assert (result.bill.refunds, result.bill.refund_amount) == (1, 50)
    assert result.ledger.payment_amount == 400


@pytest.mark.parametrize(
    ("payments", "refunds", "rows", "expected"),
    [
        ([], [], [row("x1")], ("missing_local", "payment", "x1")),
        ([paid("x1", status="closed")], [], [row("x1")], ("missing_local", "payment", "x1")),
        ([paid("x1")], [], [], ("missing_remote", "payment", "x1")),
        ([paid("x1")], [], [row("x1", 101)], ("amount_mismatch", "payment", "x1")),
        ([paid("x1")], [], [row("x1", trade_state="REVOKED")],
         ("status_mismatch", "payment", "x1")),
        ([paid("x1")], [], [row("x1", transaction_id="4299")],
         ("status_mismatch", "payment", "x1")),
        ([paid("x1")], [], [row("x1"), row("x1")], ("status_mismatch", "payment", "x1")),
        ([paid("x1")], [], [row("x1"), refund_row("r1", "x1")],
         ("missing_local", "refund", "r1")),
        ([paid("x1")], [refunded("r1", "x1", status="processing")],
         [row("x1"), refund_row("r1", "x1")], ("missing_local", "refund", "r1")),
        ([paid("x1")], [refunded("r1", "x1")], [row("x1")], ("missing_remote", "refund", "r1")),
        ([paid("x1")], [refunded("r1", "x1")], [row("x1"), refund_row("r1", "x1", 51)],
         ("refund_mismatch", "refund", "r1")),
        ([paid("x1"), paid("x2")], [refunded("r1", "x1")],
         [row("x1"), row("x2"), refund_row("r1", "x2")], ("refund_mismatch", "refund", "r1")),
        ([paid("x1")], [refunded("r1", "x1")],
         [row("x1"), refund_row("r1", "x1", status="PROCESSING")],
         ("status_mismatch", "refund", "r1")),
    ],
)  # fmt: skip
def test_each_difference(
    payments: list[LocalPayment],
    refunds: list[LocalRefund],
    rows: list[BillRow],
    expected: tuple[str, str, str],
) -> None:
    assert run(Ledger(payments, refunds), rows) == {expected}


def test_payments_found_outside_the_window_and_across_midnight() -> None:
    # recorded just after midnight (next day) and three days later (a late notification)
    late = paid("m1", day=NEXT)
    much_later = paid("m2", day=date(2025, 3, 4))
    ledger = Ledger([late, much_later], [])
    result = match_bill(DAY, [row("m1"), row("m2")], ledger.window(DAY, NEXT), ledger,
                        check_summary=False)  # fmt: skip
    assert result.differences == []
    assert {(c.number, c.local_day) for c in result.crossings} == {
        ("m1", NEXT),
        ("m2", date(2025, 3, 4)),
    }
    assert result.ledger.payments == 0  # neither was recorded on DAY


def test_the_summary_must_agree_with_the_rows() -> None:
    ledger = Ledger([paid("s1")], [])
    good = BillSummary(1, 100, 0, 0, 0)
    match_bill(DAY, [row("s1")], ledger.window(DAY), ledger, summary=lambda: good)
    bad = BillSummary(1, 90, 0, 0, 0)
    with pytest.raises(MalformedMessageError):
        match_bill(DAY, [row("s1")], ledger.window(DAY), ledger, summary=lambda: bad)
    with pytest.raises(MalformedMessageError):
        match_bill(DAY, [row("s1")], ledger.window(DAY), ledger, summary=lambda: None)


def test_missing_remote_is_held_then_reported_unless_another_bill_had_it() -> None:
    ledger = Ledger([paid("h1"), paid("h2")], [])
    result = match_bill(DAY, [], ledger.window(DAY), ledger, check_summary=False)
    assert hold_until(DAY) == date(2025, 3, 5)
    held = classify_candidates(result.candidates, {(Entry.PAYMENT, "h2")}, NEXT)
    assert [(d.number, d.state) for d in held] == [("h1", DifferenceState.HELD)]
    later = classify_candidates(result.candidates, set(), date(2025, 3, 5))
    assert {d.state for d in later} == {DifferenceState.OPEN}
    assert {d.kind for d in later} == {DifferenceKind.MISSING_REMOTE}
    at_once = classify_candidates(result.candidates, set(), DAY, hold_days=0)
    assert {d.state for d in at_once} == {DifferenceState.HELD}  # the day is not over


def test_rows_outside_the_window_are_looked_up_in_batches() -> None:
    old = [paid(f"o{i:05d}", day=date(2025, 2, 20)) for i in range(1500)]
    lookups: list[int] = []

    class Counting(Ledger):
        def payments(self, numbers: Collection[str]) -> Mapping[str, LocalPayment]:
            lookups.append(len(numbers))
            return super().payments(numbers)

    ledger = Counting(old, [])
    rows = [row(p.out_trade_no) for p in old] + [row(f"u{i:05d}") for i in range(1500)]
    result = match_bill(DAY, rows, ledger.window(DAY), ledger, check_summary=False)
    assert sorted(lookups) == [1000, 1000, 1000]
    assert len(result.differences) == 1500
    assert {d.kind for d in result.differences} == {DifferenceKind.MISSING_LOCAL}
    assert {d.number[0] for d in result.differences} == {"u"}
    assert len(result.crossings) == 1500
