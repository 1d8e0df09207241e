"""Daily bills built from the simulator's ledger (PROTOCOL.md 2.8, 3.9).

A day is a Beijing calendar date on the simulator's clock. The trade bill of a day has one row
per payment whose ``time_end`` falls on it (``交易状态`` ``SUCCESS``) and one row per refund that
succeeded on it (``REFUND``, with the refund numbers and amount); ``bill_type`` ``SUCCESS`` keeps
the payments, ``REFUND`` the refunds. Every row uses the columns of the ``ALL`` bill, a 0.60%
fee rounded to the fen (refunds give back their share, as a negative fee), and the shared
writer :func:`scanpay.wechat.bill.build_bill`. The fund-flow bill (``BASIC`` account) books each
payment as income and each refund as expense, with the balance running over the whole ledger.
The simulator serves bills for past days and for today so far (WeChat only from about 10:00
the next day); a day without rows has no bill. The ``bill_*`` faults
(:data:`scanpay.simulator.faults.BILL_FAULTS`) make a bill disagree with the ledger on
purpose: a payment left out, shown with another amount or as ``REVOKED``, refunds with another
amount, payments nobody made (:meth:`Bills.faulty_rows`).

* v2 ``POST /pay/downloadbill``: the text (gzip with ``tar_type=GZIP``), unsigned; failures as
  ``<xml>`` with ``return_code=FAIL``: ``No Bill Exist`` (``20002``), bad parameters (``20001``).
* v3 ``GET /v3/bill/tradebill`` and ``/v3/bill/fundflowbill``: a signed
  ``{hash_type, hash_value, download_url}``; ``hash_value`` is the SHA-1 of the bill text
  (before gzip). 400 ``NO_STATEMENT_EXIST`` when there is no bill, 400 ``PARAM_ERROR`` for bad
  parameters. ``GET /v3/billdownload/file?token=...`` (on the simulator's ``public_url``) needs
  a valid ``Authorization`` and answers the file itself, unsigned. Download tokens live in
  memory (the last :data:`MAX_FILES`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from typing import Any, Final
from urllib.parse import parse_qs

from scanpay.errors import MalformedMessageError
from scanpay.simulator.faults import Fault, Faults
from scanpay.simulator.ledger import Ledger, Order
from scanpay.simulator.refunds import RefundBook, SimRefund
from scanpay.simulator.v2api import V2Api
from scanpay.simulator.v3api import V3Answer, V3Api, V3Request
from scanpay.wechat.bill import ALL_COLUMNS, BillRow, build_bill
from scanpay.wechat.fields import BEIJING, format_v2_refund_time, parse_v2_time
from scanpay.wechat.states import RefundState
from scanpay.wechat.v2.bills import BillType, DownloadBill, encode_bill, encode_bill_failure
from scanpay.wechat.v3.bills import (
    DOWNLOAD_PATH,
    AccountType,
    BillDescriptor,
    FundFlowRow,
    FundFlowSummary,
    TradeBillType,
    build_fund_flow_bill,
)

FEE_PER_MILLE: Final = 6
RATE_TEXT: Final = "0.60%"
MAX_FILES: Final = 200
TEXT_TYPE: Final = "text/plain; charset=utf-8"
GZIP_TYPE: Final = "application/x-gzip"


def fee(amount: int) -> int:
    """0.60% of ``amount`` fen, rounded half up to the fen."""
    return (amount * FEE_PER_MILLE + 500) // 1000


def _clean(text: str) -> str:
    return text.replace("`", "'").replace("\r", " ").replace("\n", " ")


def _beijing_day(stamp: float) -> date:
    return datetime.fromtimestamp(stamp, UTC).astimezone(BEIJING).date()


def _paid_at(order: Order) -> datetime:
    return parse_v2_time(order.time_end)


def _order_columns(order: Order) -> dict[str, Any]:
    """The columns a payment's row and its refunds' rows take from the order."""
    return {
        "appid": order.appid,
        "mch_id": order.mch_id,
        "sub_mch_id": "0",
        "device_info": _clean(order.device_info),
        "transaction_id": order.transaction_id or "",
        "out_trade_no": order.out_trade_no,
        "openid": order.openid,
        "trade_type": "NATIVE",
        "bank_type": order.bank_type,
        "fee_type": order.fee_type,
        "body": _clean(order.body),
        "attach": _clean(order.attach),
        "rate": RATE_TEXT,
    }


def payment_row(order: Order) -> BillRow:
    return BillRow(
        trade_time=format_v2_refund_time(_paid_at(order)),
        trade_state="SUCCESS",
        settlement_total_fen=order.total_fee,
        refund_id="0",
        out_refund_no="0",
        fee_fen=fee(order.total_fee),
        order_fen=order.total_fee,
        **_order_columns(order),
    )


def refund_row(refund: SimRefund, order: Order) -> BillRow:
    assert refund.success_at is not None
    return BillRow(
        trade_time=format_v2_refund_time(datetime.fromtimestamp(refund.success_at, UTC)),
        trade_state="REFUND",
        refund_id=refund.refund_id,
        out_refund_no=refund.out_refund_no,
        refund_fen=refund.refund_fee,
        refund_type="ORIGINAL",
        refund_status="SUCCESS",
        fee_fen=-fee(refund.refund_fee),
        requested_refund_fen=refund.refund_fee,
        **_order_columns(order),
    )


def _stranger(day: date, number: int) -> BillRow:
    """A payment of ``day`` no merchant order stands behind (the ``bill_extra`` fault)."""
    stamp = datetime.combine(day, time(12, 0, number % 60), BEIJING)
    return BillRow(
        trade_time=format_v2_refund_time(stamp),
        mch_id="0",
        sub_mch_id="0",
        transaction_id=f"42000{day:%Y%m%d}{number:016d}",
        out_trade_no=f"simextra{day:%Y%m%d}{number:04d}",
        trade_type="NATIVE",
        trade_state="SUCCESS",
        fee_type="CNY",
        settlement_total_fen=100 * number,
        refund_id="0",
        out_refund_no="0",
        body="bill_extra",
        fee_fen=fee(100 * number),
        rate=RATE_TEXT,
        order_fen=100 * number,
    )


@dataclass(frozen=True)
class Entry:
    """One money movement of the ledger, in time order."""

    at: float
    order: Order
    refund: SimRefund | None = None


@dataclass(frozen=True)
class BillFile:
    content: bytes
    content_type: str


class Bills:
    """Bill texts for a day, and the v2 / v3 endpoints that serve them."""

    def __init__(
        self,
        v2: V2Api,
        v3: V3Api,
        ledger: Ledger,
        book: RefundBook,
        *,
        public_url: Callable[[], str],
        today: Callable[[], date],
        faults: Faults | None = None,
    ) -> None:
        self._v2 = v2
        self._v3 = v3
        self._ledger = ledger
        self._book = book
        self._public_url = public_url
        self._today = today
        self._faults = faults
        self._files: OrderedDict[str, BillFile] = OrderedDict()

    # the ledger as a list of movements ----------------------------------------------------

    def entries(self) -> list[Entry]:
        orders = {o.out_trade_no: o for o in self._ledger.orders() if o.transaction_id}
        found = [Entry(_paid_at(o).timestamp(), o) for o in orders.values() if o.time_end]
        for refund in self._book.all():
            if refund.status is RefundState.SUCCESS and refund.success_at is not None:
                found.append(Entry(refund.success_at, orders[refund.out_trade_no], refund))
        found.sort(key=lambda e: (e.at, e.refund is not None))
        return found

    def trade_bill(self, day: date, kind: str = "ALL") -> str | None:
        """The bill text of ``day``, or None when it has no rows."""
        self._book.settle()
        rows = []
        for entry in self.entries():
            if _beijing_day(entry.at) != day:
                continue
            if entry.refund is None and kind in ("ALL", "SUCCESS"):
                rows.append(payment_row(entry.order))
            elif entry.refund is not None and kind in ("ALL", "REFUND"):
                rows.append(refund_row(entry.refund, entry.order))
        if self._faults is not None:
            rows = self.faulty_rows(day, rows, kind)
        return build_bill(rows, header=ALL_COLUMNS) if rows else None

    def faulty_rows(self, day: date, rows: list[BillRow], kind: str = "ALL") -> list[BillRow]:
        """``rows`` as the active ``bill_*`` faults have them (see the module docstring)."""
        assert self._faults is not None
        out: list[BillRow] = []
        for row in rows:
            faults = self._faults.bill_faults(row.out_trade_no)
            if Fault.BILL_MISSING in faults:
                continue
            refund = row.trade_state == "REFUND"
            if not refund and Fault.BILL_AMOUNT in faults:
                extra = int(faults[Fault.BILL_AMOUNT].value)
                row = replace(row, settlement_total_fen=row.settlement_total_fen + extra,
                              order_fen=row.order_fen + extra)  # fmt: skip
            if not refund and Fault.BILL_REVOKED in faults:
                row = replace(row, trade_state="REVOKED")
            if refund and Fault.BILL_REFUND_AMOUNT in faults:
                extra = int(faults[Fault.BILL_REFUND_AMOUNT].value)
                row = replace(row, refund_fen=row.refund_fen + extra,
                              requested_refund_fen=row.requested_refund_fen + extra)  # fmt: skip
            out.append(row)
        spec = self._faults.bill_faults().get(Fault.BILL_EXTRA)
        if spec is not None and kind in ("ALL", "SUCCESS"):
            out.extend(_stranger(day, number) for number in range(1, int(spec.value) + 1))
        return out

    def fund_flow_bill(self, day: date, account: AccountType = AccountType.BASIC) -> str | None:
        self._book.settle()
        if account is not AccountType.BASIC:
            return None
        balance = 0
        rows: list[FundFlowRow] = []
        for number, entry in enumerate(self.entries(), start=1):
            refund = entry.refund
            income = refund is None
            amount = entry.order.total_fee if refund is None else refund.refund_fee
            balance += amount if income else -amount
            if _beijing_day(entry.at) != day:
                continue
            rows.append(
                FundFlowRow(
                    booked_at=format_v2_refund_time(datetime.fromtimestamp(entry.at, UTC)),
                    transaction_id=entry.order.transaction_id or "",
                    flow_id=f"{entry.order.transaction_id or ''}{number:04d}",
                    business_name="交易" if income else "退款",
                    business_type="交易" if income else "退款",
                    direction="收入" if income else "支出",
                    amount_fen=amount,
                    balance_fen=balance,
                    applicant="" if income else "API",
                    note="",
                    voucher_no=entry.order.out_trade_no if refund is None else refund.refund_id,
                )
            )
        if not rows:
            return None
        incomes = [r for r in rows if r.direction == "收入"]
        expenses = [r for r in rows if r.direction == "支出"]
        summary = FundFlowSummary(
            count=len(rows),
            income_count=len(incomes),
            income_fen=sum(r.amount_fen for r in incomes),
            expense_count=len(expenses),
            expense_fen=sum(r.amount_fen for r in expenses),
        )
        return build_fund_flow_bill(rows, summary)

    # v2 pay/downloadbill ------------------------------------------------------------------

    def v2_download(self, request: V3Request) -> V3Answer:
        opened = self._v2._open(request.body)
        if isinstance(opened, bytes):
            return _xml_answer(opened)
        fields, _ = opened
        try:
            asked = DownloadBill.from_fields(fields)
        except MalformedMessageError as exc:
            return _xml_answer(encode_bill_failure(f"invalid request: {exc.message}", "20001"))
        day = date(int(asked.bill_date[:4]), int(asked.bill_date[4:6]), int(asked.bill_date[6:]))
        if day > self._today():
            return _xml_answer(encode_bill_failure("invalid bill_date", "20001"))
        if self._not_ready():
            return _xml_answer(encode_bill_failure("Bill Creating", "20003"))
        text = None
        if asked.bill_type is not BillType.RECHARGE_REFUND:
            text = self.trade_bill(day, asked.bill_type.value)
        if text is None:
            return _xml_answer(encode_bill_failure("No Bill Exist", "20002"))
        content = encode_bill(text, compress=asked.gzip)
        return V3Answer(200, content, {"Content-Type": GZIP_TYPE if asked.gzip else TEXT_TYPE})

    # v3 bills -----------------------------------------------------------------------------

    def v3_trade_bill(self, request: V3Request) -> V3Answer:
        return self._v3_bill(request, fund_flow=False)

    def v3_fund_flow_bill(self, request: V3Request) -> V3Answer:
        return self._v3_bill(request, fund_flow=True)

    def _v3_bill(self, request: V3Request, *, fund_flow: bool) -> V3Answer:
        refused = self._v3._authenticate(request)
        if refused is not None:
            return refused
        params = {k: v[-1] for k, v in parse_qs(request.target.partition("?")[2]).items()}
        try:
            day = date.fromisoformat(params.get("bill_date", ""))
            tar_type = params.get("tar_type", "")
            if tar_type not in ("", "GZIP"):
                raise ValueError("tar_type")
            if fund_flow:
                text = self.fund_flow_bill(day, AccountType(params.get("account_type", "BASIC")))
            else:
                text = self.trade_bill(day, TradeBillType(params.get("bill_type", "ALL")).value)
        except ValueError:
            return self._v3._error(
                request, 400, "PARAM_ERROR", "bill_date, bill_type/account_type or tar_type"
            )
        if day > self._today():
            return self._v3._error(request, 400, "PARAM_ERROR", "bill_date不能晚于今天")
        if self._not_ready():
            return self._v3._error(request, 400, "STATEMENT_CREATING", "账单生成中，请稍后再试")
        if text is None:
            return self._v3._error(request, 400, "NO_STATEMENT_EXIST", "账单文件不存在")
        data = text.encode("utf-8")
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        gz = tar_type == "GZIP"
        token = self._keep(BillFile(encode_bill(text, compress=gz), GZIP_TYPE if gz else TEXT_TYPE))
        url = f"{self._public_url().rstrip('/')}{DOWNLOAD_PATH}?token={token}"
        descriptor = BillDescriptor(download_url=url, hash_value=digest)
        return self._v3._answer(request, 200, descriptor.to_json())

    def _not_ready(self) -> bool:
        return self._faults is not None and Fault.BILL_NOT_READY in self._faults.bill_faults()

    def _keep(self, file: BillFile) -> str:
        token = secrets.token_urlsafe(24)
        self._files[token] = file
        while len(self._files) > MAX_FILES:
            self._files.popitem(last=False)
        return token

    def v3_download(self, request: V3Request) -> V3Answer:
        refused = self._v3._authenticate(request)
        if refused is not None:
            return refused
        token = parse_qs(request.target.partition("?")[2]).get("token", [""])[-1]
        file = self._files.get(token)
        if file is None:
            return self._v3._error(request, 404, "RESOURCE_NOT_EXISTS", "账单文件不存在或已过期")
        headers = {"Content-Type": file.content_type, "Request-ID": secrets.token_hex(16)}
        return V3Answer(200, file.content, headers)  # unsigned, as WeChat serves bill files


def _xml_answer(body: bytes) -> V3Answer:
    return V3Answer(200, body, {"Content-Type": "text/xml; charset=utf-8"})
