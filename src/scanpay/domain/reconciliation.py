"""Daily reconciliation (对账): WeChat Pay's trade bill of one day against scanpay's ledger.

Pure matching, no I/O of its own: :func:`match_bill` reads bill rows one at a time (a
:class:`~scanpay.wechat.bill.BillReader` over the downloaded file) and keeps only the ledger
side in memory, as dictionaries keyed by ``out_trade_no`` and ``out_refund_no``
(:class:`LedgerWindow`), from which every matched entry is removed as soon as its row is read.

Days are Asia/Shanghai calendar days. A bill row belongs to the day WeChat's payment (or
refund) succeeded; a ledger entry's *local day* is the day scanpay recorded the success, which
can be later (a payment at 23:59:59 recorded at 00:00:02, a late notification). So the ledger
window of day D spans from the start of D-1 to the end of D+1, rows not found in it are
looked up by number (:class:`LedgerLookup`), and a ledger entry of day D that bill D lacks is
only a *candidate* ``missing_remote``: the caller drops it when another day's bill carried it
(a :class:`Crossing`) and holds it for a few days before reporting it.

Difference kinds (:class:`DifferenceKind`):

* ``missing_local`` — the bill has a successful payment or refund that scanpay does not record
  as succeeded: an unknown number, or an attempt scanpay had given up on (closed, failed), or a
  refund scanpay still sees as processing;
* ``missing_remote`` — scanpay records a successful payment or refund that no bill carries;
* ``amount_mismatch`` — a payment on both sides with different amounts;
* ``status_mismatch`` — scanpay records success, the bill's row says otherwise (a payment
  ``REVOKED``, a refund ``PROCESSING`` / ``REFUNDCLOSE`` / ``CHANGE``), or the row names
  another ``transaction_id``, or the bill repeats a row;
* ``refund_mismatch`` — a refund on both sides with a different amount or another payment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final, Generic, Protocol, TypeVar

from scanpay.errors import MalformedMessageError, ScanpayError, ValidationError
from scanpay.wechat.bill import BillRow, BillSummary
from scanpay.wechat.fields import BEIJING

PAID_STATUSES: Final = frozenset({"paid", "surplus"})  # AttemptStatus values that took money
REFUND_SUCCESS: Final = "success"
# The bill's 退款状态 in scanpay's refund words (RefundStatus values).
BILL_REFUND_STATUS: Final = {
    "SUCCESS": "success",
    "PROCESSING": "processing",
    "REFUNDCLOSE": "closed",
    "CHANGE": "abnormal",
}
HOLD_DAYS: Final = 3
LOOKUP_BATCH: Final = 1000  # bill rows outside the ledger window, looked up together
_DAY: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BillNotReadyError(ScanpayError):
    """WeChat Pay has no bill for the day yet (or it is too early to ask): retry later."""

    code = "BILL_NOT_READY"


class DifferenceKind(StrEnum):
    MISSING_LOCAL = "missing_local"
    MISSING_REMOTE = "missing_remote"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    REFUND_MISMATCH = "refund_mismatch"


class Entry(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


class DifferenceState(StrEnum):
    OPEN = "open"  # reported (and alerted)
    HELD = "held"  # a missing_remote candidate inside its hold period: not reported yet


class ReportStatus(StrEnum):
    MATCHED = "matched"
    DIFFERENCES = "differences"


def parse_day(text: str) -> date:
    """A ``YYYY-MM-DD`` calendar date, or :class:`ValidationError` (``INVALID_DATE``)."""
    if not _DAY.fullmatch(text):
        raise ValidationError("date must be YYYY-MM-DD", code="INVALID_DATE")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError("date is not a calendar date", code="INVALID_DATE") from None


def shanghai_day(moment: datetime) -> date:
    return moment.astimezone(BEIJING).date()


def day_start(day: date) -> datetime:
    """Midnight at the start of ``day`` in Shanghai, as a UTC instant."""
    return datetime.combine(day, time(0), BEIJING).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class LocalPayment:
    """A payment attempt as the ledger holds it (``status``: an AttemptStatus value)."""

    out_trade_no: str
    transaction_id: str | None
    amount: int
    status: str
    order_id: str
    local_day: date  # when scanpay recorded it (Shanghai day of the attempt's last change)


@dataclass(frozen=True, slots=True)
class LocalRefund:
    """A refund as the ledger holds it (``status``: a RefundStatus value)."""

    out_refund_no: str
    out_trade_no: str
    amount: int
    status: str
    order_id: str
    local_day: date


@dataclass
class LedgerWindow:
    """Successful payments and refunds scanpay recorded around the day (see module doc)."""

    payments: dict[str, LocalPayment] = field(default_factory=dict)
    refunds: dict[str, LocalRefund] = field(default_factory=dict)


class LedgerLookup(Protocol):
    """Any payment attempt / refund by number, whatever its status or day."""

    def payments(self, numbers: Collection[str]) -> Mapping[str, LocalPayment]: ...

    def refunds(self, numbers: Collection[str]) -> Mapping[str, LocalRefund]: ...


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    entry: Entry
    number: str  # out_trade_no (payments) or out_refund_no (refunds)
    out_trade_no: str = ""
    transaction_id: str = ""
    out_refund_no: str = ""
    order_id: str | None = None
    local_amount: int | None = None
    remote_amount: int | None = None
    local_status: str | None = None
    remote_status: str | None = None
    local_day: date | None = None
    note: str = ""
    state: DifferenceState = DifferenceState.OPEN

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind.value, self.entry.value, self.number)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "entry": self.entry.value,
            "number": self.number,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "out_refund_no": self.out_refund_no,
            "order_id": self.order_id,
            "local_amount": self.local_amount,
            "remote_amount": self.remote_amount,
            "local_status": self.local_status,
            "remote_status": self.remote_status,
            "local_day": self.local_day.isoformat() if self.local_day else None,
            "note": self.note,
            "state": self.state.value,
        }


@dataclass(frozen=True)
class Totals:
    """One side's figures for the day (fen). The ledger knows no fees: ``fees`` is None."""

    payments: int = 0
    payment_amount: int = 0
    refunds: int = 0
    refund_amount: int = 0
    fees: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return {
            "payments": self.payments,
            "payment_amount": self.payment_amount,
            "refunds": self.refunds,
            "refund_amount": self.refund_amount,
            "fees": self.fees,
        }


@dataclass(frozen=True)
class Crossing:
    """A ledger entry found in the bill of a day other than its local day."""

    entry: Entry
    number: str
    local_day: date


@dataclass
class MatchResult:
    day: date
    differences: list[Difference]
    candidates: list[Difference]  # missing_remote before the hold and crossing checks
    crossings: list[Crossing]
    bill: Totals
    ledger: Totals
    rows: int


def _is_refund_row(row: BillRow) -> bool:
    return row.trade_state == "REFUND" or row.out_refund_no not in ("", "0")


def _payment_amount(row: BillRow) -> int:
    return row.order_fen or row.settlement_total_fen


def _refund_amount(row: BillRow) -> int:
    return row.requested_refund_fen or row.refund_fen


def _compare_payment(row: BillRow, local: LocalPayment) -> Difference | None:
    def diff(kind: DifferenceKind, note: str = "") -> Difference:
        return Difference(
            kind, Entry.PAYMENT, local.out_trade_no, local.out_trade_no,
            row.transaction_id, "", local.order_id, local.amount, _payment_amount(row),
            local.status, row.trade_state, local.local_day, note,
        )  # fmt: skip

    if local.status not in PAID_STATUSES:
        return diff(DifferenceKind.MISSING_LOCAL, f"scanpay's attempt is {local.status}")
    if row.trade_state != "SUCCESS":
        return diff(DifferenceKind.STATUS_MISMATCH, f"the bill says {row.trade_state}")
    if _payment_amount(row) != local.amount:
        return diff(DifferenceKind.AMOUNT_MISMATCH)
    if local.transaction_id and row.transaction_id and row.transaction_id != local.transaction_id:
        return diff(DifferenceKind.STATUS_MISMATCH, "another transaction_id")
    return None


def _compare_refund(row: BillRow, local: LocalRefund) -> Difference | None:
    remote = BILL_REFUND_STATUS.get(row.refund_status, row.refund_status.lower() or "unknown")

    def diff(kind: DifferenceKind, note: str = "") -> Difference:
        return Difference(
            kind, Entry.REFUND, local.out_refund_no, row.out_trade_no, row.transaction_id,
            local.out_refund_no, local.order_id, local.amount, _refund_amount(row),
            local.status, remote, local.local_day, note,
        )  # fmt: skip

    if remote == REFUND_SUCCESS and local.status != REFUND_SUCCESS:
        return diff(DifferenceKind.MISSING_LOCAL, f"scanpay's refund is {local.status}")
    if remote != local.status:
        return diff(DifferenceKind.STATUS_MISMATCH, f"the bill says {row.refund_status}")
    if _refund_amount(row) != local.amount:
        return diff(DifferenceKind.REFUND_MISMATCH, "amount")
    if row.out_trade_no != local.out_trade_no:
        return diff(DifferenceKind.REFUND_MISMATCH, "the bill puts it on another payment")
    return None


def _unknown(row: BillRow) -> Difference:
    if _is_refund_row(row):
        return Difference(
            DifferenceKind.MISSING_LOCAL, Entry.REFUND, row.out_refund_no, row.out_trade_no,
            row.transaction_id, row.out_refund_no, None, None, _refund_amount(row), None,
            BILL_REFUND_STATUS.get(row.refund_status, row.refund_status.lower()),
            note="unknown to scanpay",
        )  # fmt: skip
    return Difference(
        DifferenceKind.MISSING_LOCAL, Entry.PAYMENT, row.out_trade_no, row.out_trade_no,
        row.transaction_id, "", None, None, _payment_amount(row), None, row.trade_state,
        note="unknown to scanpay",
    )  # fmt: skip


def _number(row: BillRow) -> str:
    """The row's number: out_refund_no for a refund row, out_trade_no for a payment row."""
    return row.out_refund_no if _is_refund_row(row) else row.out_trade_no


def _missing_remote(local: LocalPayment | LocalRefund) -> Difference:
    """A candidate ``missing_remote``: a ledger entry of the day that the bill lacks."""
    if isinstance(local, LocalPayment):
        entry, number, transaction_id, refund_no = (
            Entry.PAYMENT, local.out_trade_no, local.transaction_id or "", "")  # fmt: skip
    else:
        entry, number, transaction_id, refund_no = (
            Entry.REFUND, local.out_refund_no, "", local.out_refund_no)  # fmt: skip
    return Difference(
        DifferenceKind.MISSING_REMOTE, entry, number, local.out_trade_no, transaction_id,
        refund_no, local.order_id, local.amount, None, local.status, None, local.local_day,
    )  # fmt: skip


_Local = TypeVar("_Local", LocalPayment, LocalRefund)


@dataclass
class _Side(Generic[_Local]):
    """One kind of entry during :func:`match_bill`: the window's unmatched entries, the rows
    not found there (looked up later), and how to look up and compare."""

    entry: Entry
    window: dict[str, _Local]
    look_up: Callable[[list[str]], Mapping[str, _Local]]
    compare: Callable[[BillRow, _Local], Difference | None]
    later: list[BillRow] = field(default_factory=list)


class _BillTotals:
    def __init__(self) -> None:
        self.rows = self.payments = self.payment_amount = 0
        self.refunds = self.refund_amount = self.fees = 0
        self.settlement = 0

    def add(self, row: BillRow) -> None:
        self.rows += 1
        self.fees += row.fee_fen
        self.settlement += row.settlement_total_fen
        if _is_refund_row(row):
            self.refunds += 1
            self.refund_amount += row.refund_fen
        else:
            self.payments += 1
            self.payment_amount += _payment_amount(row)

    def check(self, summary: BillSummary | None) -> None:
        """The summary row must agree with the rows (else the file is damaged)."""
        if summary is None:
            raise MalformedMessageError("bill summary missing")
        if (summary.trade_count, summary.settlement_total_fen, summary.refund_total_fen) != (
            self.rows,
            self.settlement,
            self.refund_amount,
        ):
            raise MalformedMessageError("bill summary disagrees with its rows")

    def totals(self) -> Totals:
        return Totals(self.payments, self.payment_amount, self.refunds, self.refund_amount,
                      self.fees)  # fmt: skip


def ledger_totals(day: date, window: LedgerWindow) -> Totals:
    payments = [p.amount for p in window.payments.values() if p.local_day == day]
    refunds = [r.amount for r in window.refunds.values() if r.local_day == day]
    return Totals(len(payments), sum(payments), len(refunds), sum(refunds))


def match_bill(
    day: date,
    rows: Iterable[BillRow],
    window: LedgerWindow,
    lookup: LedgerLookup,
    *,
    summary: Callable[[], BillSummary | None] = lambda: None,
    check_summary: bool = True,
) -> MatchResult:
    """Match the rows of day ``day``'s bill against the ledger (see the module docstring).

    ``window`` is consumed (matched entries are removed). ``summary`` gives the bill's summary
    row once ``rows`` are exhausted; it must agree with the rows when ``check_summary``.
    """
    local_totals = ledger_totals(day, window)
    bill = _BillTotals()
    differences: list[Difference] = []
    crossings: list[Crossing] = []
    matched: set[tuple[Entry, str]] = set()
    payments = _Side(Entry.PAYMENT, window.payments, lookup.payments, _compare_payment)
    refunds = _Side(Entry.REFUND, window.refunds, lookup.refunds, _compare_refund)

    def settle(entry: Entry, number: str, local: _Local, found: Difference | None) -> None:
        matched.add((entry, number))
        if found is not None:
            differences.append(found)
        if local.local_day != day and (found is None or found.kind is not
                                       DifferenceKind.MISSING_LOCAL):  # fmt: skip
            crossings.append(Crossing(entry, number, local.local_day))

    def repeated(row: BillRow, entry: Entry, number: str) -> bool:
        if (entry, number) not in matched:
            return False
        differences.append(
            Difference(
                DifferenceKind.STATUS_MISMATCH,
                entry,
                number,
                row.out_trade_no,
                row.transaction_id,
                row.out_refund_no if entry is Entry.REFUND else "",
                note="the bill repeats this row",
            )
        )
        return True

    def read(side: _Side[_Local], row: BillRow) -> None:
        """A row matched in the window, or kept for :func:`look_up_later`."""
        number = _number(row)
        if repeated(row, side.entry, number):
            return
        local = side.window.pop(number, None)
        if local is None:
            side.later.append(row)
        else:
            settle(side.entry, number, local, side.compare(row, local))

    def look_up_later(side: _Side[_Local]) -> None:
        """Rows outside the window, looked up by number in batches (memory stays bounded
        even when the ledger has none of them)."""
        if not side.later:
            return
        found = side.look_up([_number(row) for row in side.later])
        for row in side.later:
            number = _number(row)
            if repeated(row, side.entry, number):
                continue
            local = found.get(number)
            if local is None:
                matched.add((side.entry, number))
                differences.append(_unknown(row))
            else:
                settle(side.entry, number, local, side.compare(row, local))
        side.later.clear()

    for row in rows:
        bill.add(row)
        if _is_refund_row(row):
            read(refunds, row)
        else:
            read(payments, row)
        if len(payments.later) + len(refunds.later) >= LOOKUP_BATCH:
            look_up_later(payments)
            look_up_later(refunds)
    if check_summary:
        bill.check(summary())
    look_up_later(payments)
    look_up_later(refunds)

    unmatched: list[LocalPayment | LocalRefund] = [*window.payments.values(),
                                                   *window.refunds.values()]  # fmt: skip
    candidates = [_missing_remote(local) for local in unmatched if local.local_day == day]
    return MatchResult(day, differences, candidates, crossings, bill.totals(), local_totals,
                       bill.rows)  # fmt: skip


def hold_until(local_day: date, hold_days: int = HOLD_DAYS) -> date:
    """The first Shanghai day on which a missing_remote of ``local_day`` is reported."""
    return local_day + timedelta(days=hold_days + 1)


def classify_candidates(
    candidates: Iterable[Difference],
    crossed: Collection[tuple[Entry, str]],
    today: date,
    hold_days: int = HOLD_DAYS,
) -> list[Difference]:
    """Candidates no other bill carried: held until :func:`hold_until`, then open."""
    out = []
    for candidate in candidates:
        if (candidate.entry, candidate.number) in crossed:
            continue
        assert candidate.local_day is not None
        held = today < hold_until(candidate.local_day, hold_days)
        state = DifferenceState.HELD if held else DifferenceState.OPEN
        out.append(_with_state(candidate, state))
    return out


def _with_state(difference: Difference, state: DifferenceState) -> Difference:
    return replace(difference, state=state)


@dataclass(frozen=True)
class Report:
    """One day's reconciliation as stored (the latest run wins)."""

    day: date
    status: ReportStatus
    api_version: str
    bill: Totals
    ledger: Totals
    rows: int
    differences: list[Difference]
    run_at: datetime

    @property
    def open(self) -> list[Difference]:
        return [d for d in self.differences if d.state is DifferenceState.OPEN]

    @property
    def held(self) -> list[Difference]:
        return [d for d in self.differences if d.state is DifferenceState.HELD]

    def counts(self) -> dict[str, int]:
        counts = {kind.value: 0 for kind in DifferenceKind}
        for difference in self.open:
            counts[difference.kind.value] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "status": self.status.value,
            "api_version": self.api_version,
            "run_at": self.run_at.isoformat(),
            "bill_rows": self.rows,
            "totals": {"bill": self.bill.to_json(), "ledger": self.ledger.to_json()},
            "counts": self.counts(),
            "differences": [d.to_json() for d in self.open],
            "held": [d.to_json() for d in self.held],
        }


def status_of(differences: Iterable[Difference]) -> ReportStatus:
    if any(d.state is DifferenceState.OPEN for d in differences):
        return ReportStatus.DIFFERENCES
    return ReportStatus.MATCHED
