"""Refunds over API v3: create and query (PROTOCOL.md 3.8).

Client side: :func:`create_refund_request`, :func:`query_refund_request`,
:func:`parse_refund`. Simulator side: :func:`parse_refund_request` and
:meth:`Refund.to_json`. The same :class:`Refund` shape is the decrypted REFUND.* resource,
where WeChat names the state ``refund_status`` instead of ``status``; both are read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from scanpay.errors import MalformedMessageError
from scanpay.wechat.fields import (
    check_amount,
    check_out_refund_no,
    check_out_trade_no,
    format_v3_time,
    parse_v3_time,
)
from scanpay.wechat.states import RefundState
from scanpay.wechat.v3.frozen import assemble
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
from scanpay.wechat.v3.request import ApiRequest, path_segment
from scanpay.wechat.v3.transactions import check_notify_url

REFUNDS_PATH: Final = "/v3/refund/domestic/refunds"
_TRANSACTION_ID: Final = re.compile(r"[0-9A-Za-z]{1,32}")


@dataclass(frozen=True, slots=True)
class RefundApplication:
    """A refund request body, validated on construction (one of the two order ids)."""

    out_refund_no: str
    refund: int
    total: int
    out_trade_no: str = ""
    transaction_id: str = ""
    reason: str = ""
    notify_url: str = ""
    currency: str = "CNY"

    def __post_init__(self) -> None:
        check_out_refund_no(self.out_refund_no)
        check_amount(self.refund, "amount.refund")
        check_amount(self.total, "amount.total")
        if self.refund > self.total:
            raise MalformedMessageError("amount.refund must not exceed amount.total")
        if bool(self.out_trade_no) == bool(self.transaction_id):
            raise MalformedMessageError("give exactly one of out_trade_no and transaction_id")
        if self.out_trade_no:
            check_out_trade_no(self.out_trade_no)
        if self.transaction_id and not _TRANSACTION_ID.fullmatch(self.transaction_id):
            raise MalformedMessageError("transaction_id must be 1-32 letters or digits")
        if len(self.reason) > 80:
            raise MalformedMessageError("reason must be at most 80 characters")
        if self.notify_url:
            check_notify_url(self.notify_url)

    def to_json(self) -> JsonObject:
        body: JsonObject = {}
        if self.transaction_id:
            body["transaction_id"] = self.transaction_id
        else:
            body["out_trade_no"] = self.out_trade_no
        body["out_refund_no"] = self.out_refund_no
        if self.reason:
            body["reason"] = self.reason
        if self.notify_url:
            body["notify_url"] = self.notify_url
        body["amount"] = {"refund": self.refund, "total": self.total, "currency": self.currency}
        return body


def create_refund_request(application: RefundApplication) -> ApiRequest:
    return ApiRequest("POST", REFUNDS_PATH, dump_json(application.to_json()), idempotent=True)


def parse_refund_request(body: bytes) -> RefundApplication:
    """WeChat's side: a received refund body."""
    data = parse_json(body)
    amount = obj(data, "amount")
    return RefundApplication(
        out_refund_no=text(data, "out_refund_no"),
        refund=integer(amount, "refund"),
        total=integer(amount, "total"),
        out_trade_no=text(data, "out_trade_no", required=False),
        transaction_id=text(data, "transaction_id", required=False),
        reason=text(data, "reason", required=False),
        notify_url=text(data, "notify_url", required=False),
        currency=text(amount, "currency", required=False) or "CNY",
    )


def query_refund_request(out_refund_no: str) -> ApiRequest:
    path = f"{REFUNDS_PATH}/{path_segment(check_out_refund_no(out_refund_no))}"
    return ApiRequest("GET", path, idempotent=True)


@dataclass(frozen=True)
class Refund:
    """A v3 Refund object (create/query answer, decrypted REFUND.* resource).

    No ``slots``: :func:`refund_from_json` builds it with
    :func:`scanpay.wechat.v3.frozen.assemble`; a dataclass because callers use
    ``dataclasses.replace`` on it.
    """

    out_refund_no: str
    refund_id: str
    status: RefundState
    out_trade_no: str = ""
    transaction_id: str = ""
    mchid: str = ""
    channel: str = ""
    user_received_account: str = ""
    success_time: datetime | None = None
    create_time: datetime | None = None
    funds_account: str = ""
    total: int = 0
    refund: int = 0
    payer_total: int = 0
    payer_refund: int = 0
    currency: str = "CNY"

    def to_json(self, *, notification: bool = False) -> JsonObject:
        """Query/create answer, or with ``notification=True`` the REFUND.* resource shape."""
        body: JsonObject = {}
        if self.mchid:
            body["mchid"] = self.mchid
        body.update(
            refund_id=self.refund_id,
            out_refund_no=self.out_refund_no,
            transaction_id=self.transaction_id,
            out_trade_no=self.out_trade_no,
        )
        if self.channel:
            body["channel"] = self.channel
        if self.user_received_account:
            body["user_received_account"] = self.user_received_account
        if self.success_time is not None:
            body["success_time"] = format_v3_time(self.success_time)
        if self.create_time is not None and not notification:
            body["create_time"] = format_v3_time(self.create_time)
        body["refund_status" if notification else "status"] = self.status.value
        if self.funds_account and not notification:
            body["funds_account"] = self.funds_account
        amount: JsonObject = {
            "total": self.total,
            "refund": self.refund,
            "payer_total": self.payer_total,
            "payer_refund": self.payer_refund,
        }
        if not notification:
            amount["currency"] = self.currency
        body["amount"] = amount
        return body


_REFUND_REQUIRED: Final = ("out_refund_no", "refund_id")
_REFUND_OPTIONAL: Final = (
    "out_trade_no", "transaction_id", "mchid", "channel", "user_received_account",
    "success_time", "create_time", "funds_account",
)  # fmt: skip
_REFUND_AMOUNTS: Final = ("total", "refund", "payer_total", "payer_refund")
_REFUND_STATES: Final = {state.value: state for state in RefundState}


def refund_from_json(data: Mapping[str, object]) -> Refund:
    state_text = text(data, "status", required=False) or text(data, "refund_status")
    status = _REFUND_STATES.get(state_text)
    if status is None:
        raise MalformedMessageError("unknown refund status")
    out_refund_no, refund_id = texts(data, _REFUND_REQUIRED)
    (out_trade_no, transaction_id, mchid, channel, account, success_time, create_time,
     funds_account) = texts(data, _REFUND_OPTIONAL, required=False)  # fmt: skip
    amount = obj(data, "amount", required=False)
    total, refund, payer_total, payer_refund = integers(amount, _REFUND_AMOUNTS)
    return assemble(  # every field, each checked above: see scanpay.wechat.v3.frozen
        Refund,
        out_refund_no=out_refund_no,
        refund_id=refund_id,
        status=status,
        out_trade_no=out_trade_no,
        transaction_id=transaction_id,
        mchid=mchid,
        channel=channel,
        user_received_account=account,
        success_time=parse_v3_time(success_time) if success_time else None,
        create_time=parse_v3_time(create_time) if create_time else None,
        funds_account=funds_account,
        total=total,
        refund=refund,
        payer_total=payer_total,
        payer_refund=payer_refund,
        currency=text(amount, "currency", required=False) or "CNY",
    )


def parse_refund(body: bytes) -> Refund:
    return refund_from_json(parse_json(body))
