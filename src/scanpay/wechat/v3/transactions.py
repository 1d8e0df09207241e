"""Native payments over API v3: prepay, query, close (PROTOCOL.md 3.5-3.7).

Client side: :func:`native_prepay_request`, :func:`query_by_out_trade_no_request`,
:func:`query_by_transaction_id_request`, :func:`close_order_request` build requests;
:func:`parse_code_url` and :func:`parse_transaction` read answers. Simulator side:
:func:`parse_native_prepay` validates a received body into a :class:`NativeOrder`,
:func:`code_url_body` and :meth:`Transaction.to_json` build answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import check_amount, check_out_trade_no, format_v3_time, parse_v3_time
from scanpay.wechat.states import TradeState
from scanpay.wechat.v3.frozen import adopt, assemble
from scanpay.wechat.v3.jsonbody import (
    JsonObject,
    dump_json,
    integer,
    integers,
    obj,
    parse_json,
    text,
    texts,
)
from scanpay.wechat.v3.request import ApiRequest, path_segment, with_query

NATIVE_PATH: Final = "/v3/pay/transactions/native"
BY_OUT_TRADE_NO: Final = "/v3/pay/transactions/out-trade-no/"
BY_TRANSACTION_ID: Final = "/v3/pay/transactions/id/"
_NOTIFY_URL: Final = re.compile(r"https?://[^\s?#]+")
_TRANSACTION_ID: Final = re.compile(r"[0-9A-Za-z]{1,32}")


def check_notify_url(url: str) -> str:
    if len(url) > 255 or not _NOTIFY_URL.fullmatch(url):
        raise MalformedMessageError("notify_url must be an http(s) URL without a query, <=255")
    return url


@dataclass(frozen=True, slots=True)
class NativeOrder:
    """A Native prepay request body, validated on construction."""

    appid: str
    mchid: str
    description: str
    out_trade_no: str
    notify_url: str
    total: int
    currency: str = "CNY"
    time_expire: datetime | None = None
    attach: str = ""
    goods_tag: str = ""
    payer_client_ip: str = ""

    def __post_init__(self) -> None:
        if not self.appid or len(self.appid) > 32 or not self.mchid or len(self.mchid) > 32:
            raise MalformedMessageError("appid and mchid are required (<=32)")
        if not self.description or len(self.description) > 127:
            raise MalformedMessageError("description must be 1-127 characters")
        if any(ord(c) > 0xFFFF for c in self.description):
            raise MalformedMessageError("description must not contain emoji")
        check_out_trade_no(self.out_trade_no)
        check_notify_url(self.notify_url)
        check_amount(self.total, "amount.total")
        if len(self.attach) > 128 or len(self.goods_tag) > 32:
            raise MalformedMessageError("attach <=128, goods_tag <=32")
        if self.time_expire is not None and self.time_expire.tzinfo is None:
            raise MalformedMessageError("time_expire needs a UTC offset")

    def to_json(self) -> JsonObject:
        body: JsonObject = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": self.description,
            "out_trade_no": self.out_trade_no,
        }
        if self.time_expire is not None:
            body["time_expire"] = format_v3_time(self.time_expire)
        if self.attach:
            body["attach"] = self.attach
        body["notify_url"] = self.notify_url
        if self.goods_tag:
            body["goods_tag"] = self.goods_tag
        body["amount"] = {"total": self.total, "currency": self.currency}
        if self.payer_client_ip:
            body["scene_info"] = {"payer_client_ip": self.payer_client_ip}
        return body


def native_prepay_request(order: NativeOrder) -> ApiRequest:
    return ApiRequest("POST", NATIVE_PATH, dump_json(order.to_json()), idempotent=True)


def parse_native_prepay(body: bytes) -> NativeOrder:
    """WeChat's side: a received prepay body as a :class:`NativeOrder`."""
    data = parse_json(body)
    amount = obj(data, "amount")
    expire = text(data, "time_expire", required=False)
    scene = obj(data, "scene_info", required=False)
    return NativeOrder(
        appid=text(data, "appid"),
        mchid=text(data, "mchid"),
        description=text(data, "description"),
        out_trade_no=text(data, "out_trade_no"),
        notify_url=text(data, "notify_url"),
        total=integer(amount, "total"),
        currency=text(amount, "currency", required=False) or "CNY",
        time_expire=parse_v3_time(expire) if expire else None,
        attach=text(data, "attach", required=False),
        goods_tag=text(data, "goods_tag", required=False),
        payer_client_ip=text(scene, "payer_client_ip", required=False),
    )


def parse_code_url(body: bytes) -> str:
    code_url = text(parse_json(body), "code_url")
    if not code_url.startswith("weixin://"):
        raise MalformedMessageError("code_url must be a weixin:// URL")
    return code_url


def code_url_body(code_url: str) -> bytes:
    return dump_json({"code_url": code_url})


def query_by_out_trade_no_request(out_trade_no: str, mchid: str) -> ApiRequest:
    path = BY_OUT_TRADE_NO + path_segment(check_out_trade_no(out_trade_no))
    return ApiRequest("GET", with_query(path, {"mchid": mchid}), idempotent=True)


def query_by_transaction_id_request(transaction_id: str, mchid: str) -> ApiRequest:
    if not _TRANSACTION_ID.fullmatch(transaction_id):
        raise MalformedMessageError("transaction_id must be 1-32 letters or digits")
    path = BY_TRANSACTION_ID + transaction_id
    return ApiRequest("GET", with_query(path, {"mchid": mchid}), idempotent=True)


def close_order_request(out_trade_no: str, mchid: str) -> ApiRequest:
    path = BY_OUT_TRADE_NO + path_segment(check_out_trade_no(out_trade_no)) + "/close"
    return ApiRequest("POST", path, dump_json({"mchid": mchid}), idempotent=True)


@dataclass(frozen=True)
class Transaction:
    """A v3 Transaction object (query answer, decrypted TRANSACTION.SUCCESS resource).

    No ``slots``: :func:`transaction_from_json` builds it with
    :func:`scanpay.wechat.v3.frozen.assemble` (a quarter of the generated ``__init__``'s cost);
    it stays a dataclass because callers use ``dataclasses.replace`` on it.
    """

    appid: str
    mchid: str
    out_trade_no: str
    trade_state: TradeState
    trade_state_desc: str = ""
    transaction_id: str = ""
    trade_type: str = ""
    bank_type: str = ""
    attach: str = ""
    success_time: datetime | None = None
    payer_openid: str = ""
    total: int = 0
    payer_total: int = 0
    currency: str = "CNY"
    payer_currency: str = "CNY"

    def to_json(self) -> JsonObject:
        body: JsonObject = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": self.out_trade_no,
        }
        if self.transaction_id:
            body["transaction_id"] = self.transaction_id
        if self.trade_type:
            body["trade_type"] = self.trade_type
        body["trade_state"] = self.trade_state.value
        body["trade_state_desc"] = self.trade_state_desc
        if self.bank_type:
            body["bank_type"] = self.bank_type
        body["attach"] = self.attach
        if self.success_time is not None:
            body["success_time"] = format_v3_time(self.success_time)
        if self.payer_openid:
            body["payer"] = {"openid": self.payer_openid}
        amount: JsonObject = {"total": self.total, "currency": self.currency}
        if self.trade_state is TradeState.SUCCESS or self.payer_total:
            amount["payer_total"] = self.payer_total
            amount["payer_currency"] = self.payer_currency
        body["amount"] = amount
        return body


_TRADE_STATES: Final = {state.value: state for state in TradeState}


_REQUIRED_TEXT: Final = ("appid", "mchid", "out_trade_no", "trade_state")
_OPTIONAL_TEXT: Final = (
    "trade_state_desc", "transaction_id", "trade_type", "bank_type", "attach", "success_time"
)  # fmt: skip
_CURRENCIES: Final = ("currency", "payer_currency")
_AMOUNTS: Final = ("total", "payer_total")


# One pass over the usual shape of a Transaction, every field checked; anything it does not
# accept goes to _transaction_checked, which names the offending field (or accepts an unusual
# but valid shape). tests/wechat/v3/test_frozen.py holds the two to the same result.
_TEXT: Final = (*_REQUIRED_TEXT, *_OPTIONAL_TEXT)
_OPTIONAL_STR: Final = frozenset({str, type(None)})
_OPTIONAL_INT: Final = frozenset({int, type(None)})
_NO_OBJECT: Final[Mapping[str, object]] = {}


def transaction_from_json(data: Mapping[str, object]) -> Transaction:
    """A :class:`Transaction` from a decoded JSON object; a bad field is malformed."""
    get = data.get
    values = list(map(get, _TEXT))
    amount, payer = get("amount"), get("payer")
    amount = _NO_OBJECT if amount is None else amount
    payer = _NO_OBJECT if payer is None else payer
    if type(amount) is dict and type(payer) is dict:
        in_amount = amount.get
        currency, payer_currency = in_amount("currency"), in_amount("payer_currency")
        total, payer_total, openid = (
            in_amount("total"),
            in_amount("payer_total"),
            payer.get("openid"),
        )
        if (
            _OPTIONAL_STR.issuperset(map(type, values))  # texts: str, or absent/null
            and values[0]  # appid, mchid, out_trade_no: present and non-empty
            and values[1]
            and values[2]
            and type(currency) in _OPTIONAL_STR
            and type(payer_currency) in _OPTIONAL_STR
            and type(openid) in _OPTIONAL_STR
            and type(total) in _OPTIONAL_INT  # exactly int: a bool is not an amount
            and type(payer_total) in _OPTIONAL_INT
        ):
            state = _TRADE_STATES.get(values[3])  # type: ignore[call-overload]  # str or None
            if state is not None:
                appid, mchid, out_trade_no, _, desc, transaction_id, kind, bank, attach, paid = (
                    values
                )
                return adopt(  # every field, each checked above: see scanpay.wechat.v3.frozen
                    Transaction,
                    {
                        "appid": appid,
                        "mchid": mchid,
                        "out_trade_no": out_trade_no,
                        "trade_state": state,
                        "trade_state_desc": desc or "",
                        "transaction_id": transaction_id or "",
                        "trade_type": kind or "",
                        "bank_type": bank or "",
                        "attach": attach or "",
                        "success_time": parse_v3_time(paid) if paid else None,  # type: ignore[arg-type]
                        "payer_openid": openid or "",
                        "total": total or 0,
                        "payer_total": payer_total or 0,
                        "currency": currency or "CNY",
                        "payer_currency": payer_currency or "CNY",
                    },
                )
    return _transaction_checked(data)


def _transaction_checked(data: Mapping[str, object]) -> Transaction:
    """The field-by-field path: the reference for, and fallback of, the one above."""
    appid, mchid, out_trade_no, state_text = texts(data, _REQUIRED_TEXT)
    state = _TRADE_STATES.get(state_text)
    if state is None:
        raise MalformedMessageError("unknown trade_state")
    desc, transaction_id, trade_type, bank_type, attach, success_time = texts(
        data, _OPTIONAL_TEXT, required=False
    )
    amount = obj(data, "amount", required=False)
    currency, payer_currency = texts(amount, _CURRENCIES, required=False)
    total, payer_total = integers(amount, _AMOUNTS)
    return assemble(  # every field, each checked above: see scanpay.wechat.v3.frozen
        Transaction,
        appid=appid,
        mchid=mchid,
        out_trade_no=out_trade_no,
        trade_state=state,
        trade_state_desc=desc,
        transaction_id=transaction_id,
        trade_type=trade_type,
        bank_type=bank_type,
        attach=attach,
        success_time=parse_v3_time(success_time) if success_time else None,
        payer_openid=text(obj(data, "payer", required=False), "openid", required=False),
        total=total,
        payer_total=payer_total,
        currency=currency or "CNY",
        payer_currency=payer_currency or "CNY",
    )


def parse_transaction(body: bytes) -> Transaction:
    return transaction_from_json(parse_json(body))
