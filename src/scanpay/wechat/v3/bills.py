"""API v3 trade and fund-flow bills (PROTOCOL.md 3.9).

Two steps. (1) A signed, verified ``GET /v3/bill/tradebill?bill_date=YYYY-MM-DD...`` or
``/v3/bill/fundflowbill?...`` answers a :class:`BillDescriptor` (``hash_type`` SHA1,
``hash_value``, ``download_url``). (2) A signed ``GET`` of the download URL's path and query
answers the raw file, *unsigned* (:attr:`ApiRequest.signed_response` is false). The SHA-1 is
checked on the bytes downloaded, or, for a gzip file, on the decompressed text (documentation is
ambiguous; both are integrity checks). Trade bills are parsed by the shared
:mod:`scanpay.wechat.bill`; fund-flow bills by :func:`parse_fund_flow_bill` here.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from scanpay.errors import MalformedMessageError
from scanpay.wechat.bill import Bill, parse_bill
from scanpay.wechat.fields import fen_to_yuan, yuan_to_fen
from scanpay.wechat.v3.jsonbody import dump_json, parse_json, text
from scanpay.wechat.v3.request import ApiRequest, with_query

TRADE_BILL_PATH: Final = "/v3/bill/tradebill"
FUND_FLOW_BILL_PATH: Final = "/v3/bill/fundflowbill"
DOWNLOAD_PATH: Final = "/v3/billdownload/file"
MAX_BILL_BYTES: Final = 64 * 1024 * 1024
_GZIP_MAGIC: Final = b"\x1f\x8b"
FUND_FLOW_COLUMNS: Final = (
    "记账时间", "微信支付业务单号", "资金流水单号", "业务名称", "业务类型", "收支类型",
    "收支金额（元）", "账户结余（元）", "资金变更提交申请人", "备注", "业务凭证号",
)  # fmt: skip
FUND_FLOW_SUMMARY: Final = ("资金流水总笔数", "收入笔数", "收入金额", "支出笔数", "支出金额")


class TradeBillType(StrEnum):
    ALL = "ALL"
    SUCCESS = "SUCCESS"
    REFUND = "REFUND"


class AccountType(StrEnum):
    BASIC = "BASIC"
    OPERATION = "OPERATION"
    FEES = "FEES"


def trade_bill_request(
    bill_date: date, bill_type: TradeBillType = TradeBillType.ALL, *, gzip: bool = False
) -> ApiRequest:
    params = {"bill_date": bill_date.isoformat(), "bill_type": bill_type.value}
    if gzip:
        params["tar_type"] = "GZIP"
    return ApiRequest("GET", with_query(TRADE_BILL_PATH, params), idempotent=True)


def fund_flow_bill_request(
    bill_date: date, account_type: AccountType = AccountType.BASIC, *, gzip: bool = False
) -> ApiRequest:
    params = {"bill_date": bill_date.isoformat(), "account_type": account_type.value}
    if gzip:
        params["tar_type"] = "GZIP"
    return ApiRequest("GET", with_query(FUND_FLOW_BILL_PATH, params), idempotent=True)


@dataclass(frozen=True)
class BillDescriptor:
    download_url: str
    hash_value: str
    hash_type: str = "SHA1"

    def to_json(self) -> bytes:
        return dump_json(
            {
                "hash_type": self.hash_type,
                "hash_value": self.hash_value,
                "download_url": self.download_url,
            }
        )


def parse_bill_descriptor(body: bytes) -> BillDescriptor:
    data = parse_json(body)
    descriptor = BillDescriptor(
        download_url=text(data, "download_url"),
        hash_value=text(data, "hash_value").lower(),
        hash_type=text(data, "hash_type"),
    )
    if descriptor.hash_type != "SHA1":
        raise MalformedMessageError("bill hash_type must be SHA1")
    return descriptor


def bill_download_request(descriptor: BillDescriptor) -> ApiRequest:
    """The signed GET of the file: path and query of ``download_url`` (host is the API's)."""
    parts = urlsplit(descriptor.download_url)
    if parts.scheme not in ("https", "http") or not parts.path.startswith("/"):
        raise MalformedMessageError("download_url must be an http(s) URL")
    url = parts.path + (f"?{parts.query}" if parts.query else "")
    return ApiRequest("GET", url, idempotent=True, signed_response=False)


def _gunzip(content: bytes) -> bytes:
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(content, MAX_BILL_BYTES)
    except zlib.error:
        raise MalformedMessageError("bill gzip is corrupt") from None
    if decompressor.unconsumed_tail or not decompressor.eof:
        raise MalformedMessageError("bill gzip is truncated or too large")
    return data


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def bill_file_bytes(content: bytes, descriptor: BillDescriptor) -> bytes:
    """Hash-check (and gunzip) a downloaded bill; its bytes, or :class:`MalformedMessageError`."""
    if len(content) > MAX_BILL_BYTES:
        raise MalformedMessageError("bill too large")
    expected = descriptor.hash_value.encode("ascii", "replace")
    raw_ok = hmac.compare_digest(_sha1(content).encode(), expected)
    data = _gunzip(content) if content.startswith(_GZIP_MAGIC) else content
    if not raw_ok and not hmac.compare_digest(_sha1(data).encode(), expected):
        raise MalformedMessageError("bill SHA1 does not match hash_value")
    return data


def open_bill_file(content: bytes, descriptor: BillDescriptor) -> str:
    """Hash-check (and gunzip) a downloaded bill; the text, or :class:`MalformedMessageError`."""
    data = bill_file_bytes(content, descriptor)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessageError("bill is not UTF-8") from None


def parse_trade_bill(content: bytes, descriptor: BillDescriptor) -> Bill:
    return parse_bill(open_bill_file(content, descriptor))


@dataclass(frozen=True)
class FundFlowRow:
    booked_at: str
    transaction_id: str
    flow_id: str
    business_name: str
    business_type: str
    direction: str
    amount_fen: int
    balance_fen: int
    applicant: str
    note: str
    voucher_no: str


@dataclass(frozen=True)
class FundFlowSummary:
    count: int
    income_count: int
    income_fen: int
    expense_count: int
    expense_fen: int


@dataclass(frozen=True)
class FundFlowBill:
    rows: tuple[FundFlowRow, ...]
    summary: FundFlowSummary


def _ticked(line: str, width: int) -> list[str]:
    if not line.startswith("`"):
        raise MalformedMessageError("bill fields must start with a back-tick")
    values = line[1:].split(",`")
    if len(values) != width:
        raise MalformedMessageError("bill row has the wrong number of fields")
    return values


def _whole(value: str, name: str) -> int:
    fen = yuan_to_fen(value, name)
    if fen % 100:
        raise MalformedMessageError(f"{name} is not a whole number")
    return fen // 100


def parse_fund_flow_bill(text_: str) -> FundFlowBill:
    lines = [ln.rstrip("\r") for ln in text_.removeprefix("\ufeff").split("\n") if ln.strip()]
    if len(lines) < 3 or tuple(lines[0].split(",")) != FUND_FLOW_COLUMNS:
        raise MalformedMessageError("not a fund-flow bill header")
    if tuple(lines[-2].split(",")) != FUND_FLOW_SUMMARY:
        raise MalformedMessageError("fund-flow bill summary header not found")
    rows = []
    for line in lines[1:-2]:
        v = _ticked(line, len(FUND_FLOW_COLUMNS))
        rows.append(
            FundFlowRow(
                v[0],
                v[1],
                v[2],
                v[3],
                v[4],
                v[5],
                yuan_to_fen(v[6], "收支金额"),
                yuan_to_fen(v[7], "账户结余"),
                v[8],
                v[9],
                v[10],
            )
        )
    s = _ticked(lines[-1], len(FUND_FLOW_SUMMARY))
    summary = FundFlowSummary(
        _whole(s[0], "资金流水总笔数"), _whole(s[1], "收入笔数"), yuan_to_fen(s[2], "收入金额"),
        _whole(s[3], "支出笔数"), yuan_to_fen(s[4], "支出金额"),
    )  # fmt: skip
    return FundFlowBill(tuple(rows), summary)


def build_fund_flow_bill(rows: list[FundFlowRow], summary: FundFlowSummary) -> str:
    """WeChat's side: write a fund-flow bill."""
    lines = [",".join(FUND_FLOW_COLUMNS)]
    for r in rows:
        values = [
            r.booked_at, r.transaction_id, r.flow_id, r.business_name, r.business_type,
            r.direction, fen_to_yuan(r.amount_fen), fen_to_yuan(r.balance_fen), r.applicant,
            r.note, r.voucher_no,
        ]  # fmt: skip
        lines.append(",".join("`" + v for v in values))
    lines.append(",".join(FUND_FLOW_SUMMARY))
    totals = [
        str(summary.count), str(summary.income_count), fen_to_yuan(summary.income_fen),
        str(summary.expense_count), fen_to_yuan(summary.expense_fen),
    ]  # fmt: skip
    lines.append(",".join("`" + v for v in totals))
    return "\n".join(lines) + "\n"


def fund_flow_bill_from(content: bytes, descriptor: BillDescriptor) -> FundFlowBill:
    return parse_fund_flow_bill(open_bill_file(content, descriptor))
