"""The WeChat Pay trade bill text, shared by v2 ``pay/downloadbill`` and v3 trade bill files.

Layout (PROTOCOL.md 2.8)::

    交易时间,公众账号ID,商户号,...               header row (plain)
    `2019-02-19 05:01:46,`wx...,`1921000401,...  one row per trade / refund: every field starts
                                                 with a back-tick, amounts are yuan
    总交易单数,应结订单总金额,...                 summary header (plain)
    `45,`0.47,`0.14,...                          summary row

Rows are split on ``,``` (comma + back-tick), so a comma inside a product name survives.
Yuan become int fen exactly through :class:`~decimal.Decimal` (a fraction of a fen is refused).
The column set depends on the bill type; rows keep every column by name, and the columns of
the ALL bill are also typed on :class:`BillRow`. :func:`build_bill` writes the same format
(the simulator's side).
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, BinaryIO, Final

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import fen_to_yuan, yuan_to_fen

ALL_COLUMNS: Final = (
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
)  # fmt: skip
SUMMARY_COLUMNS: Final = (
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
    "订单总金额", "申请退款总金额",
)  # fmt: skip

# Chinese column -> BillRow attribute; amounts are converted to fen.
_TEXT: Final = {
    "交易时间": "trade_time", "公众账号ID": "appid", "商户号": "mch_id",
    "特约商户号": "sub_mch_id", "设备号": "device_info", "微信订单号": "transaction_id",
    "商户订单号": "out_trade_no", "用户标识": "openid", "交易类型": "trade_type",
    "交易状态": "trade_state", "付款银行": "bank_type", "货币种类": "fee_type",
    "微信退款单号": "refund_id", "商户退款单号": "out_refund_no", "退款类型": "refund_type",
    "退款状态": "refund_status", "商品名称": "body", "商户数据包": "attach", "费率": "rate",
    "费率备注": "rate_note",
}  # fmt: skip
_MONEY: Final = {
    "应结订单金额": "settlement_total_fen", "代金券金额": "coupon_fen", "退款金额": "refund_fen",
    "充值券退款金额": "coupon_refund_fen", "手续费": "fee_fen", "订单金额": "order_fen",
    "申请退款金额": "requested_refund_fen",
}  # fmt: skip
_FEE_PLACES: Final = {"手续费": 5}  # WeChat writes the fee with five decimals
_SUMMARY_ATTRS: Final = (
    "trade_count", "settlement_total_fen", "refund_total_fen", "coupon_refund_total_fen",
    "fee_total_fen", "order_total_fen", "requested_refund_total_fen",
)  # fmt: skip
MAX_BILL_CHARS: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class BillRow:
    """One bill line. Missing columns (other bill types) read as ``""`` / ``0``."""

    columns: Mapping[str, str] = field(default_factory=dict, repr=False)
    trade_time: str = ""
    appid: str = ""
    mch_id: str = ""
    sub_mch_id: str = ""
    device_info: str = ""
    transaction_id: str = ""
    out_trade_no: str = ""
    openid: str = ""
    trade_type: str = ""
    trade_state: str = ""
    bank_type: str = ""
    fee_type: str = ""
    settlement_total_fen: int = 0
    coupon_fen: int = 0
    refund_id: str = ""
    out_refund_no: str = ""
    refund_fen: int = 0
    coupon_refund_fen: int = 0
    refund_type: str = ""
    refund_status: str = ""
    body: str = ""
    attach: str = ""
    fee_fen: int = 0
    rate: str = ""
    order_fen: int = 0
    requested_refund_fen: int = 0
    rate_note: str = ""

    @classmethod
    def from_columns(cls, columns: Mapping[str, str]) -> BillRow:
        values: dict[str, str | int] = {}
        for name, text in columns.items():
            if name in _TEXT:
                values[_TEXT[name]] = text
            elif name in _MONEY:
                values[_MONEY[name]] = yuan_to_fen(text, name) if text else 0
        return cls(columns=dict(columns), **values)  # type: ignore[arg-type]

    def to_columns(self, header: Sequence[str] = ALL_COLUMNS) -> dict[str, str]:
        """The row as text columns of ``header`` (typed attributes win over ``columns``)."""
        out: dict[str, str] = {}
        for name in header:
            if name in _TEXT:
                out[name] = getattr(self, _TEXT[name])
            elif name in _MONEY:
                out[name] = fen_to_yuan(getattr(self, _MONEY[name]), _FEE_PLACES.get(name, 2))
            else:
                out[name] = self.columns.get(name, "")
        return out


@dataclass(frozen=True)
class BillSummary:
    trade_count: int
    settlement_total_fen: int
    refund_total_fen: int
    coupon_refund_total_fen: int
    fee_total_fen: int
    order_total_fen: int = 0
    requested_refund_total_fen: int = 0


@dataclass(frozen=True)
class Bill:
    header: tuple[str, ...]
    rows: tuple[BillRow, ...]
    summary: BillSummary
    summary_header: tuple[str, ...] = SUMMARY_COLUMNS


def summarize(rows: Sequence[BillRow]) -> BillSummary:
    """The totals WeChat prints under the rows, computed from the rows."""
    return BillSummary(
        trade_count=len(rows),
        settlement_total_fen=sum(r.settlement_total_fen for r in rows),
        refund_total_fen=sum(r.refund_fen for r in rows),
        coupon_refund_total_fen=sum(r.coupon_refund_fen for r in rows),
        fee_total_fen=sum(r.fee_fen for r in rows),
        order_total_fen=sum(r.order_fen for r in rows),
        requested_refund_total_fen=sum(r.requested_refund_fen for r in rows),
    )


def _plain(line: str, what: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in line.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise MalformedMessageError(f"bill {what} has empty or repeated column names")
    return names


def _ticked(line: str, width: int, what: str) -> list[str]:
    if not line.startswith("`"):
        raise MalformedMessageError(f"bill {what} fields must start with a back-tick")
    values = line[1:].split(",`")
    if len(values) != width:
        raise MalformedMessageError(f"bill {what} has {len(values)} fields, expected {width}")
    return values


def _count(text: str) -> int:
    # The summary writes the count as "45" or "45.0".
    fen = yuan_to_fen(text, "总交易单数")
    if fen % 100:
        raise MalformedMessageError("bill trade count is not a whole number")
    return fen // 100


def parse_bill(text: str) -> Bill:
    """Parse a bill's text into typed rows and totals; :class:`MalformedMessageError` if not."""
    if len(text) > MAX_BILL_CHARS:
        raise MalformedMessageError("bill too large")
    lines = [line.rstrip("\r") for line in text.removeprefix("\ufeff").split("\n")]
    lines = [line for line in lines if line.strip()]
    if len(lines) < 3:
        raise MalformedMessageError("bill needs a header, a summary header and a summary row")
    header = _plain(lines[0], "header")
    summary_header = _plain(lines[-2], "summary header")
    if summary_header[0] != SUMMARY_COLUMNS[0]:
        raise MalformedMessageError("bill summary header not found")
    rows = tuple(
        BillRow.from_columns(dict(zip(header, _ticked(line, len(header), "row"), strict=True)))
        for line in lines[1:-2]
    )
    summary_values = _ticked(lines[-1], len(summary_header), "summary")
    totals = dict(zip(summary_header, summary_values, strict=True))
    known = dict(zip(SUMMARY_COLUMNS, _SUMMARY_ATTRS, strict=True))
    values = {
        known[name]: (_count(text) if name == SUMMARY_COLUMNS[0] else yuan_to_fen(text, name))
        for name, text in totals.items()
        if name in known
    }
    try:
        summary = BillSummary(**values)
    except TypeError:
        raise MalformedMessageError("bill summary lacks a total") from None
    return Bill(header=header, rows=rows, summary=summary, summary_header=summary_header)


def _quick_row(columns: dict[str, str], values: dict[str, Any]) -> BillRow:
    """``BillRow(columns=columns, **values)`` without the frozen dataclass's 28
    ``object.__setattr__`` calls (the streaming reader builds 100,000s of rows; ``values``
    holds only BillRow's own field names, typed as :meth:`BillRow.from_columns` types them)."""
    row = object.__new__(BillRow)
    state = row.__dict__
    state.update(_ROW_DEFAULTS)
    state.update(values)
    state["columns"] = columns
    return row


_ROW_DEFAULTS: Final = {
    f.name: f.default for f in fields(BillRow) if f.default is not MISSING
}  # fmt: skip


class BillReader:
    """A bill read line by line, never whole: :meth:`rows` yields each row as it is read,
    and :attr:`summary` is set once the rows are exhausted (the summary row comes last).

    ``lines`` may be any iterable of text lines (a file, :func:`lines_of`); the same rules as
    :func:`parse_bill` apply, and breaking one raises :class:`MalformedMessageError`.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.header: tuple[str, ...] = ()
        self.summary: BillSummary | None = None
        self.row_count = 0

    def _next(self) -> str | None:
        for line in self._lines:
            line = line.rstrip("\r\n")
            if line.strip():
                return line
        return None

    def rows(self) -> Iterator[BillRow]:
        first = self._next()
        if first is None:
            raise MalformedMessageError("bill is empty")
        self.header = header = _plain(first.removeprefix("\ufeff"), "header")
        width = len(header)
        # Which attribute each column fills, worked out once for the whole file.
        texts = [(i, _TEXT[name]) for i, name in enumerate(header) if name in _TEXT]
        money = [(i, _MONEY[name], name) for i, name in enumerate(header) if name in _MONEY]
        amounts: dict[str, int] = {"": 0}  # bills repeat amounts ("0.00") row after row
        while (line := self._next()) is not None:
            if not line.startswith("`"):
                self._read_summary(line)
                return
            values = _ticked(line, width, "row")
            self.row_count += 1
            typed: dict[str, Any] = {attr: values[i] for i, attr in texts}
            for i, attr, name in money:
                text = values[i]
                fen = amounts.get(text)
                if fen is None:
                    fen = yuan_to_fen(text, name)
                    if len(amounts) < _AMOUNT_CACHE:
                        amounts[text] = fen
                typed[attr] = fen
            yield _quick_row(dict(zip(header, values, strict=True)), typed)
        raise MalformedMessageError("bill summary header not found")

    def _read_summary(self, line: str) -> None:
        summary_header = _plain(line, "summary header")
        if summary_header[0] != SUMMARY_COLUMNS[0]:
            raise MalformedMessageError("bill summary header not found")
        values_line = self._next()
        if values_line is None:
            raise MalformedMessageError("bill summary row missing")
        if self._next() is not None:
            raise MalformedMessageError("bill has lines after its summary")
        values = _ticked(values_line, len(summary_header), "summary")
        known = dict(zip(SUMMARY_COLUMNS, _SUMMARY_ATTRS, strict=True))
        totals = {
            known[name]: (_count(text) if name == SUMMARY_COLUMNS[0] else yuan_to_fen(text, name))
            for name, text in zip(summary_header, values, strict=True)
            if name in known
        }
        try:
            self.summary = BillSummary(**totals)
        except TypeError:
            raise MalformedMessageError("bill summary lacks a total") from None


MAX_BILL_BYTES: Final = 1024 * 1024 * 1024  # a streamed bill file, decompressed
_GZIP_MAGIC: Final = b"\x1f\x8b"
HEAD_BYTES: Final = 64 * 1024
_AMOUNT_CACHE: Final = 4096


class BillSink:
    """A bill file written to ``out`` as its bytes arrive, never held whole.

    The first bytes tell whether it is gzip (then it is decompressed on the way); the SHA-1 of
    the bytes received and of the decompressed file are kept (WeChat's v3 ``hash_value``
    covers one of them), and so are the first :data:`HEAD_BYTES` of the file, which is how a
    v2 XML error answer is recognised. More than ``limit`` decompressed bytes are refused.
    """

    def __init__(self, out: BinaryIO, limit: int = MAX_BILL_BYTES) -> None:
        self._out = out
        self._limit = limit
        self._raw = hashlib.sha1(usedforsecurity=False)
        self._text = hashlib.sha1(usedforsecurity=False)
        self._inflate: zlib._Decompress | None = None
        self._started = False
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._raw.update(chunk)
        if not self._started:
            self._started = True
            if chunk.startswith(_GZIP_MAGIC):
                self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        if self._inflate is None:
            self._keep(chunk)
            return
        try:
            self._keep(self._inflate.decompress(chunk, self._limit - self.size + 1))
        except zlib.error:
            raise MalformedMessageError("bill gzip is corrupt") from None
        if self._inflate.unconsumed_tail:
            raise MalformedMessageError("bill too large")

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise MalformedMessageError("bill too large")
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        self._text.update(data)
        self._out.write(data)

    def close(self) -> None:
        """The file is complete (a gzip stream must have ended)."""
        if self._inflate is not None and not self._inflate.eof:
            raise MalformedMessageError("bill gzip is truncated")
        self._out.flush()

    @property
    def received_sha1(self) -> str:
        return self._raw.hexdigest()

    @property
    def file_sha1(self) -> str:
        return self._text.hexdigest()


def lines_of(data: bytes | Iterable[bytes] | BinaryIO) -> Iterator[str]:
    """UTF-8 text lines of a bill held as bytes (or read from a binary file), one at a time."""
    chunks: Iterable[bytes] = io.BytesIO(data) if isinstance(data, bytes) else data
    for raw in chunks:
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessageError("bill is not UTF-8") from None


def build_bill(
    rows: Sequence[BillRow],
    *,
    header: Sequence[str] = ALL_COLUMNS,
    summary: BillSummary | None = None,
) -> str:
    """Write rows (and their totals, computed unless given) in WeChat's bill format."""
    totals = summary or summarize(rows)
    lines = [",".join(header)]
    for row in rows:
        columns = row.to_columns(header)
        if any(",`" in value or "\n" in value for value in columns.values()):
            raise MalformedMessageError("bill values must not contain ',`' or newlines")
        lines.append(",".join("`" + columns[name] for name in header))
    lines.append(",".join(SUMMARY_COLUMNS))
    amounts = [fen_to_yuan(getattr(totals, attr)) for attr in _SUMMARY_ATTRS[1:]]
    lines.append(",".join("`" + value for value in [str(totals.trade_count), *amounts]))
    return "\n".join(lines) + "\n"
