"""API v2 refunds as pure builders and parsers, both directions (PROTOCOL.md 2.6, 2.7).

``secapi/pay/refund`` (needs the merchant's client certificate at the transport) and
``pay/refundquery``. Request types validate on construction and give the field map that
:func:`scanpay.wechat.v2.envelope.encode_request` signs; ``from_fields`` reads a received
request (the simulator's side). Result types parse a verified response with ``parse_*`` and
give back the business fields with ``to_fields`` (the simulator passes them to
:func:`~scanpay.wechat.v2.envelope.encode_response`). Refund query answers index each refund
with a ``_$n`` suffix (``refund_fee_0``, ``refund_fee_1``...): they become a tuple of
:class:`RefundItem`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import check_amount, check_out_refund_no, check_out_trade_no, parse_fen
from scanpay.wechat.states import RefundState

REFUND_PATH: Final = "/secapi/pay/refund"
REFUND_QUERY_PATH: Final = "/pay/refundquery"
MAX_INDEXED_REFUNDS: Final = 50  # WeChat allows up to 50 partial refunds per order


class RefundStatus(StrEnum):
    """v2 wire values of ``refund_status`` (query ``_$n`` and refund notifications)."""

    SUCCESS = "SUCCESS"
    PROCESSING = "PROCESSING"
    REFUNDCLOSE = "REFUNDCLOSE"
    CHANGE = "CHANGE"

    @property
    def state(self) -> RefundState:
        """The version-neutral refund state."""
        return _STATES[self]


_STATES: Final = {
    RefundStatus.SUCCESS: RefundState.SUCCESS,
    RefundStatus.PROCESSING: RefundState.PROCESSING,
    RefundStatus.REFUNDCLOSE: RefundState.CLOSED,
    RefundStatus.CHANGE: RefundState.ABNORMAL,
}


def require(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise MalformedMessageError(f"missing field {name}")
    return value


def fen_field(fields: Mapping[str, str], name: str) -> int:
    return parse_fen(require(fields, name), name)


def optional_fen(fields: Mapping[str, str], name: str) -> int | None:
    text = fields.get(name, "")
    return parse_fen(text, name) if text else None


def refund_status(text: str) -> RefundStatus:
    try:
        return RefundStatus(text)
    except ValueError:
        raise MalformedMessageError("unknown refund_status") from None


def _limit(value: str, name: str, size: int) -> str:
    if len(value) > size:
        raise MalformedMessageError(f"{name} longer than {size} characters")
    return value


def _put(target: dict[str, str | int], name: str, value: str | int | None) -> None:
    if value is not None and value != "":
        target[name] = value


@dataclass(frozen=True)
class RefundRequest:
    """``secapi/pay/refund``: refund part or all of a paid order.

    Retry a failed or unanswered refund with the *same* ``out_refund_no``: WeChat refunds a
    given number once.
    """

    out_refund_no: str
    total_fee: int
    refund_fee: int
    out_trade_no: str = ""
    transaction_id: str = ""
    refund_fee_type: str = ""
    refund_desc: str = ""
    refund_account: str = ""
    notify_url: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.out_trade_no and not self.transaction_id:
            raise MalformedMessageError("out_trade_no or transaction_id is required")
        if self.out_trade_no:
            check_out_trade_no(self.out_trade_no)
        _limit(self.transaction_id, "transaction_id", 32)
        check_out_refund_no(self.out_refund_no)
        check_amount(self.total_fee, "total_fee")
        check_amount(self.refund_fee, "refund_fee")
        if self.refund_fee > self.total_fee:
            raise MalformedMessageError("refund_fee must not exceed total_fee")
        _limit(self.refund_desc, "refund_desc", 80)
        if self.notify_url and (
            not self.notify_url.startswith(("https://", "http://")) or "?" in self.notify_url
        ):
            raise MalformedMessageError("notify_url must be an absolute URL without a query")
        _limit(self.notify_url, "notify_url", 256)

    def to_fields(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {}
        _put(fields, "transaction_id", self.transaction_id)
        _put(fields, "out_trade_no", self.out_trade_no)
        fields["out_refund_no"] = self.out_refund_no
        fields["total_fee"] = self.total_fee
        fields["refund_fee"] = self.refund_fee
        _put(fields, "refund_fee_type", self.refund_fee_type)
        _put(fields, "refund_desc", self.refund_desc)
        _put(fields, "refund_account", self.refund_account)
        _put(fields, "notify_url", self.notify_url)
        fields.update(self.extra)
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> RefundRequest:
        """Read a received request (the simulator's side); raise on any rule broken."""
        known = {
            "appid", "mch_id", "nonce_str", "sign", "sign_type", "transaction_id",
            "out_trade_no", "out_refund_no", "total_fee", "refund_fee", "refund_fee_type",
            "refund_desc", "refund_account", "notify_url",
        }  # fmt: skip
        return cls(
            out_refund_no=require(fields, "out_refund_no"),
            total_fee=fen_field(fields, "total_fee"),
            refund_fee=fen_field(fields, "refund_fee"),
            out_trade_no=fields.get("out_trade_no", ""),
            transaction_id=fields.get("transaction_id", ""),
            refund_fee_type=fields.get("refund_fee_type", ""),
            refund_desc=fields.get("refund_desc", ""),
            refund_account=fields.get("refund_account", ""),
            notify_url=fields.get("notify_url", ""),
            extra={k: v for k, v in fields.items() if k not in known},
        )


@dataclass(frozen=True)
class RefundResult:
    """A refund WeChat *accepted* (not yet done: confirm by query or notification)."""

    transaction_id: str
    out_trade_no: str
    out_refund_no: str
    refund_id: str
    refund_fee: int
    total_fee: int
    cash_fee: int
    settlement_refund_fee: int | None = None
    settlement_total_fee: int | None = None
    fee_type: str = "CNY"
    cash_refund_fee: int | None = None

    def to_fields(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {
            "result_code": "SUCCESS",
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "out_refund_no": self.out_refund_no,
            "refund_id": self.refund_id,
            "refund_fee": self.refund_fee,
            "total_fee": self.total_fee,
            "cash_fee": self.cash_fee,
            "fee_type": self.fee_type,
        }
        _put(fields, "settlement_refund_fee", self.settlement_refund_fee)
        _put(fields, "settlement_total_fee", self.settlement_total_fee)
        _put(fields, "cash_refund_fee", self.cash_refund_fee)
        return fields


def parse_refund(fields: Mapping[str, str]) -> RefundResult:
    """Read the verified answer of ``secapi/pay/refund``."""
    return RefundResult(
        transaction_id=require(fields, "transaction_id"),
        out_trade_no=require(fields, "out_trade_no"),
        out_refund_no=require(fields, "out_refund_no"),
        refund_id=require(fields, "refund_id"),
        refund_fee=fen_field(fields, "refund_fee"),
        total_fee=fen_field(fields, "total_fee"),
        cash_fee=fen_field(fields, "cash_fee"),
        settlement_refund_fee=optional_fen(fields, "settlement_refund_fee"),
        settlement_total_fee=optional_fen(fields, "settlement_total_fee"),
        fee_type=fields.get("fee_type", "") or "CNY",
        cash_refund_fee=optional_fen(fields, "cash_refund_fee"),
    )


_QUERY_KEYS: Final = ("refund_id", "out_refund_no", "transaction_id", "out_trade_no")


@dataclass(frozen=True)
class RefundQuery:
    """``pay/refundquery`` by one of four numbers (precedence in the order of the fields)."""

    refund_id: str = ""
    out_refund_no: str = ""
    transaction_id: str = ""
    out_trade_no: str = ""
    offset: int | None = None

    def __post_init__(self) -> None:
        if not any(getattr(self, name) for name in _QUERY_KEYS):
            raise MalformedMessageError(
                "one of refund_id, out_refund_no, transaction_id, out_trade_no is required"
            )
        if self.out_refund_no:
            check_out_refund_no(self.out_refund_no)
        if self.out_trade_no:
            check_out_trade_no(self.out_trade_no)
        if self.offset is not None and (isinstance(self.offset, bool) or self.offset < 0):
            raise MalformedMessageError("offset must be a whole number >= 0")

    @property
    def key(self) -> tuple[str, str]:
        """The ``(field, value)`` WeChat looks refunds up by."""
        for name in _QUERY_KEYS:
            value: str = getattr(self, name)
            if value:
                return name, value
        raise AssertionError("unreachable: validated on construction")

    def to_fields(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {}
        for name in _QUERY_KEYS:
            _put(fields, name, getattr(self, name))
        _put(fields, "offset", self.offset)
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> RefundQuery:
        offset = fields.get("offset", "")
        return cls(
            refund_id=fields.get("refund_id", ""),
            out_refund_no=fields.get("out_refund_no", ""),
            transaction_id=fields.get("transaction_id", ""),
            out_trade_no=fields.get("out_trade_no", ""),
            offset=parse_fen(offset, "offset") if offset else None,
        )


@dataclass(frozen=True)
class RefundItem:
    """One refund of an order, from the ``_$n`` fields of a refund query."""

    out_refund_no: str
    refund_id: str
    refund_fee: int
    refund_status: RefundStatus
    refund_channel: str = ""
    settlement_refund_fee: int | None = None
    refund_account: str = ""
    refund_recv_accout: str = ""  # sic: WeChat's spelling
    refund_success_time: str = ""  # yyyy-MM-dd HH:mm:ss, Beijing; fields.parse_v2_refund_time
    coupon_refund_fee: int | None = None


@dataclass(frozen=True)
class RefundQueryResult:
    transaction_id: str
    out_trade_no: str
    total_fee: int
    cash_fee: int
    refunds: tuple[RefundItem, ...]
    total_refund_count: int | None = None
    settlement_total_fee: int | None = None
    fee_type: str = "CNY"

    def to_fields(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {
            "result_code": "SUCCESS",
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "total_fee": self.total_fee,
            "cash_fee": self.cash_fee,
            "fee_type": self.fee_type,
            "refund_count": len(self.refunds),
        }
        _put(fields, "total_refund_count", self.total_refund_count)
        _put(fields, "settlement_total_fee", self.settlement_total_fee)
        for n, item in enumerate(self.refunds):
            fields[f"out_refund_no_{n}"] = item.out_refund_no
            fields[f"refund_id_{n}"] = item.refund_id
            fields[f"refund_fee_{n}"] = item.refund_fee
            fields[f"refund_status_{n}"] = item.refund_status.value
            _put(fields, f"refund_channel_{n}", item.refund_channel)
            _put(fields, f"settlement_refund_fee_{n}", item.settlement_refund_fee)
            _put(fields, f"refund_account_{n}", item.refund_account)
            _put(fields, f"refund_recv_accout_{n}", item.refund_recv_accout)
            _put(fields, f"refund_success_time_{n}", item.refund_success_time)
            _put(fields, f"coupon_refund_fee_{n}", item.coupon_refund_fee)
        return fields


def _item(fields: Mapping[str, str], n: int) -> RefundItem:
    return RefundItem(
        out_refund_no=require(fields, f"out_refund_no_{n}"),
        refund_id=require(fields, f"refund_id_{n}"),
        refund_fee=fen_field(fields, f"refund_fee_{n}"),
        refund_status=refund_status(require(fields, f"refund_status_{n}")),
        refund_channel=fields.get(f"refund_channel_{n}", ""),
        settlement_refund_fee=optional_fen(fields, f"settlement_refund_fee_{n}"),
        refund_account=fields.get(f"refund_account_{n}", ""),
        refund_recv_accout=fields.get(f"refund_recv_accout_{n}", ""),
        refund_success_time=fields.get(f"refund_success_time_{n}", ""),
        coupon_refund_fee=optional_fen(fields, f"coupon_refund_fee_{n}"),
    )


def parse_refund_query(fields: Mapping[str, str]) -> RefundQueryResult:
    """Read the verified answer of ``pay/refundquery``; ``_0`` .. ``_{count-1}`` must exist."""
    count = fen_field(fields, "refund_count") if fields.get("refund_count") != "0" else 0
    if count > MAX_INDEXED_REFUNDS:
        raise MalformedMessageError(f"refund_count above {MAX_INDEXED_REFUNDS}")
    total_count = fields.get("total_refund_count", "")
    return RefundQueryResult(
        transaction_id=fields.get("transaction_id", ""),
        out_trade_no=require(fields, "out_trade_no"),
        total_fee=fen_field(fields, "total_fee"),
        cash_fee=fen_field(fields, "cash_fee"),
        refunds=tuple(_item(fields, n) for n in range(count)),
        total_refund_count=parse_fen(total_count, "total_refund_count") if total_count else None,
        settlement_total_fee=optional_fen(fields, "settlement_total_fee"),
        fee_type=fields.get("fee_type", "") or "CNY",
    )
