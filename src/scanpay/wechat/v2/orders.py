"""API v2 Native order calls as pure request builders and response parsers.

``pay/unifiedorder`` with ``trade_type=NATIVE`` (PROTOCOL.md 2.3), ``pay/orderquery`` (2.4)
and ``pay/closeorder`` (2.5). Each request type validates itself on construction and turns
into the field map that :func:`scanpay.wechat.v2.envelope.encode_request` signs; each
``parse_*`` takes the verified field map of a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import check_amount, check_out_trade_no, parse_fen
from scanpay.wechat.states import TradeState

UNIFIED_ORDER_PATH: Final = "/pay/unifiedorder"
ORDER_QUERY_PATH: Final = "/pay/orderquery"
CLOSE_ORDER_PATH: Final = "/pay/closeorder"


def _require(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name, "")
    if not value:
        raise MalformedMessageError(f"missing field {name}")
    return value


def _limit(value: str, name: str, size: int) -> str:
    if len(value) > size:
        raise MalformedMessageError(f"{name} longer than {size} characters")
    return value


@dataclass(frozen=True)
class UnifiedOrder:
    """A Native unified order (mode 2)."""

    out_trade_no: str
    body: str
    total_fee: int
    notify_url: str
    product_id: str
    spbill_create_ip: str = "127.0.0.1"
    attach: str = ""
    fee_type: str = "CNY"
    time_start: str = ""
    time_expire: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_out_trade_no(self.out_trade_no)
        check_amount(self.total_fee, "total_fee")
        if not self.body:
            raise MalformedMessageError("body is required")
        _limit(self.body, "body", 127)
        _limit(self.attach, "attach", 127)
        if not self.notify_url.startswith(("https://", "http://")) or "?" in self.notify_url:
            raise MalformedMessageError("notify_url must be an absolute URL without a query")
        _limit(self.notify_url, "notify_url", 256)
        if not self.product_id:
            raise MalformedMessageError("product_id is required for NATIVE")
        _limit(self.product_id, "product_id", 32)
        if not self.spbill_create_ip:
            raise MalformedMessageError("spbill_create_ip is required")

    def to_fields(self) -> dict[str, str | int]:
        fields: dict[str, str | int] = {
            "body": self.body,
            "attach": self.attach,
            "out_trade_no": self.out_trade_no,
            "fee_type": self.fee_type,
            "total_fee": self.total_fee,
            "spbill_create_ip": self.spbill_create_ip,
            "time_start": self.time_start,
            "time_expire": self.time_expire,
            "notify_url": self.notify_url,
            "trade_type": "NATIVE",
            "product_id": self.product_id,
        }
        fields.update(self.extra)
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> UnifiedOrder:
        """Read a received request (the simulator's side); raise on any rule broken."""
        if fields.get("trade_type") != "NATIVE":
            raise MalformedMessageError("trade_type must be NATIVE")
        known = {
            "appid", "mch_id", "nonce_str", "sign", "sign_type", "body", "attach",
            "out_trade_no", "fee_type", "total_fee", "spbill_create_ip", "time_start",
            "time_expire", "notify_url", "trade_type", "product_id",
        }  # fmt: skip
        return cls(
            out_trade_no=_require(fields, "out_trade_no"),
            body=_require(fields, "body"),
            total_fee=parse_fen(_require(fields, "total_fee"), "total_fee"),
            notify_url=_require(fields, "notify_url"),
            product_id=_require(fields, "product_id"),
            spbill_create_ip=_require(fields, "spbill_create_ip"),
            attach=fields.get("attach", ""),
            fee_type=fields.get("fee_type", "") or "CNY",
            time_start=fields.get("time_start", ""),
            time_expire=fields.get("time_expire", ""),
            extra={k: v for k, v in fields.items() if k not in known},
        )


@dataclass(frozen=True)
class UnifiedOrderResult:
    prepay_id: str
    code_url: str
    trade_type: str


def parse_unified_order(fields: Mapping[str, str]) -> UnifiedOrderResult:
    code_url = _require(fields, "code_url")
    if not code_url.startswith("weixin://"):
        raise MalformedMessageError("code_url is not a weixin:// URL")
    return UnifiedOrderResult(
        prepay_id=fields.get("prepay_id", ""),
        code_url=_limit(code_url, "code_url", 64),
        trade_type=fields.get("trade_type", "NATIVE"),
    )


def order_query_fields(*, out_trade_no: str = "", transaction_id: str = "") -> dict[str, str]:
    """``pay/orderquery`` by merchant number or WeChat number (the latter wins at WeChat)."""
    if not out_trade_no and not transaction_id:
        raise MalformedMessageError("out_trade_no or transaction_id is required")
    if out_trade_no:
        check_out_trade_no(out_trade_no)
    return {"out_trade_no": out_trade_no, "transaction_id": transaction_id}


def close_order_fields(out_trade_no: str) -> dict[str, str]:
    return {"out_trade_no": check_out_trade_no(out_trade_no)}


@dataclass(frozen=True)
class OrderStatus:
    """What a query (or a payment notification) says about one order."""

    out_trade_no: str
    trade_state: TradeState
    total_fee: int | None
    fee_type: str
    transaction_id: str
    time_end: str
    attach: str
    appid: str
    mch_id: str
    trade_state_desc: str = ""


def parse_order_query(fields: Mapping[str, str]) -> OrderStatus:
    try:
        state = TradeState(_require(fields, "trade_state"))
    except ValueError:
        raise MalformedMessageError("unknown trade_state") from None
    total = fields.get("total_fee", "")
    return OrderStatus(
        out_trade_no=_require(fields, "out_trade_no"),
        trade_state=state,
        total_fee=parse_fen(total, "total_fee") if total else None,
        fee_type=fields.get("fee_type", "") or "CNY",
        transaction_id=fields.get("transaction_id", ""),
        time_end=fields.get("time_end", ""),
        attach=fields.get("attach", ""),
        appid=fields.get("appid", ""),
        mch_id=fields.get("mch_id", ""),
        trade_state_desc=fields.get("trade_state_desc", ""),
    )
