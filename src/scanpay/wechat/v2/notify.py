"""API v2 payment result notification (PROTOCOL.md 2.10).

Verify first, over every field received (WeChat may add fields), with the sign type the
notification declares; then read it. The merchant's answer is XML ``SUCCESS/OK``; anything
else makes WeChat retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scanpay.errors import MalformedMessageError
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v2.orders import OrderStatus, parse_order_query
from scanpay.wechat.v2.sign import sign_v2, verify_v2
from scanpay.wechat.xmlcodec import dump_xml, parse_xml


class ReportedFailure(MalformedMessageError):
    """An authentic notification (signature verified) whose ``result_code`` is not SUCCESS:
    WeChat reports a failed payment. It is acknowledged and recorded; nothing changes."""

    code = "REPORTED_FAILURE"

    def __init__(self, out_trade_no: str, err_code: str) -> None:
        super().__init__("notification result_code is not SUCCESS")
        self.out_trade_no = out_trade_no
        self.err_code = err_code


@dataclass(frozen=True)
class PaymentNotification:
    status: OrderStatus
    sign_type: SignType
    fields: Mapping[str, str]


def verify_payment_notification(
    body: bytes, key: Secret, *, appid: str | None = None, mch_id: str | None = None
) -> PaymentNotification:
    """Parse and verify the raw bytes of a payment notification.

    The signature is checked with the sign type the notification declares; when ``appid`` /
    ``mch_id`` are given the notification must name exactly them.
    """
    fields = parse_xml(body)
    if fields.get("return_code") != "SUCCESS":
        raise MalformedMessageError("notification return_code is not SUCCESS")
    sign_type = verify_v2(fields, key)
    if (appid is not None and fields.get("appid") != appid) or (
        mch_id is not None and fields.get("mch_id") != mch_id
    ):
        raise MalformedMessageError("notification names another merchant")
    if fields.get("result_code") != "SUCCESS":
        raise ReportedFailure(fields.get("out_trade_no", ""), fields.get("err_code", ""))
    status = parse_order_query({**fields, "trade_state": TradeState.SUCCESS.value})
    if not status.transaction_id or status.total_fee is None:
        raise MalformedMessageError("notification lacks transaction_id or total_fee")
    return PaymentNotification(status=status, sign_type=sign_type, fields=fields)


def build_payment_notification(
    fields: Mapping[str, str | int], key: Secret, sign_type: SignType
) -> bytes:
    """The simulator's side: sign and encode a notification body."""
    message: dict[str, str | int] = {"return_code": "SUCCESS", "return_msg": "OK"}
    message.update({k: v for k, v in fields.items() if v != ""})
    message["result_code"] = "SUCCESS"
    if sign_type is not SignType.MD5:
        message["sign_type"] = sign_type.value
    message["sign"] = sign_v2(message, key, sign_type)
    return dump_xml(message)


ACK_SUCCESS: bytes = dump_xml({"return_code": "SUCCESS", "return_msg": "OK"})


def ack_failure(reason: str) -> bytes:
    return dump_xml({"return_code": "FAIL", "return_msg": reason})


def is_success_ack(body: bytes) -> bool:
    """Whether a merchant's answer acknowledges the notification (the simulator's side)."""
    try:
        fields = parse_xml(body)
    except MalformedMessageError:
        return False
    return fields.get("return_code") == "SUCCESS"
