"""WeChat Pay API v2 Native endpoints as WeChat answers them, over the shared protocol core.

Checks run in WeChat's order: the XML parses (else ``return_code=FAIL``), ``mch_id`` is
ours, the ``sign`` verifies with the declared ``sign_type`` (else ``FAIL`` / ``签名错误``,
unsigned), ``appid`` belongs to ``mch_id`` (``APPID_MCHID_NOT_MATCH``), required fields are
present (``LACK_PARAMS``), then the business rules. Every ``return_code=SUCCESS`` answer is
signed with the request's sign type. Nothing here raises to the web layer: every input,
however hostile, gets an XML answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Final

from scanpay.errors import MalformedMessageError, SignatureError
from scanpay.simulator import ids
from scanpay.simulator.clock import SimClock
from scanpay.simulator.credentials import MerchantCredentials
from scanpay.simulator.ledger import Ledger, Order
from scanpay.wechat.fields import parse_v2_time
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v2.envelope import encode_failure, encode_response
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v2.sign import verify_v2
from scanpay.wechat.xmlcodec import parse_xml

CODE_URL_LIFETIME: Final = 2 * 3600
MIN_EXPIRE_DELAY: Final = timedelta(minutes=5)
UNIFIED_REQUIRED: Final = (
    "body",
    "out_trade_no",
    "total_fee",
    "spbill_create_ip",
    "notify_url",
    "trade_type",
)
STATE_DESC: Final = {
    TradeState.NOTPAY: "订单未支付",
    TradeState.SUCCESS: "支付成功",
    TradeState.CLOSED: "订单已关闭",
    TradeState.REFUND: "转入退款",
    TradeState.USERPAYING: "用户支付中",
}

Fields = dict[str, str | int]


class V2Api:
    """The three v2 Native calls; each takes the raw request body and returns the answer."""

    def __init__(
        self,
        creds: MerchantCredentials,
        ledger: Ledger,
        clock: SimClock,
        *,
        nonce: Callable[[], str] = ids.nonce,
    ) -> None:
        self._creds = creds
        self._ledger = ledger
        self._clock = clock
        self._nonce = nonce

    # envelope -----------------------------------------------------------------------------

    def _open(self, body: bytes) -> tuple[dict[str, str], SignType] | bytes:
        """Verified request fields of this merchant's app and their sign type, or the ready
        FAIL answer."""
        try:
            fields = parse_xml(body)
        except MalformedMessageError as exc:
            return encode_failure(f"XML格式错误: {exc.message}")
        mch_id = fields.get("mch_id", "")
        if not mch_id:
            return encode_failure("缺少参数mch_id")
        if mch_id != self._creds.mchid:
            return encode_failure("MCHID_NOT_EXIST: mch_id不存在")
        try:
            sign_type = verify_v2(fields, self._creds.api_v2_key)
        except SignatureError:
            return encode_failure("签名错误")
        except MalformedMessageError:
            return encode_failure("sign_type参数错误: 只支持MD5或HMAC-SHA256")
        refused = self._precheck(fields, sign_type)
        if refused is not None:
            return refused
        return fields, sign_type

    def _answer(self, sign_type: SignType, fields: Mapping[str, str | int]) -> bytes:
        message: Fields = {"appid": self._creds.appid, "mch_id": self._creds.mchid}
        message.update(fields)
        return encode_response(message, self._creds.api_v2_key, sign_type, nonce=self._nonce())

    def _fail(self, sign_type: SignType, code: str, description: str) -> bytes:
        return self._answer(
            sign_type, {"result_code": "FAIL", "err_code": code, "err_code_des": description}
        )

    def _precheck(self, fields: Mapping[str, str], sign_type: SignType) -> bytes | None:
        appid = fields.get("appid", "")
        if not appid:
            return self._fail(sign_type, "LACK_PARAMS", "缺少参数appid")
        if appid != self._creds.appid:
            return self._fail(sign_type, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        return None

    # pay/unifiedorder ---------------------------------------------------------------------

    def unified_order(self, body: bytes) -> bytes:
        opened = self._open(body)
        if isinstance(opened, bytes):
            return opened
        fields, sign_type = opened
        required = [
            *UNIFIED_REQUIRED,
            *(["product_id"] if fields.get("trade_type") == "NATIVE" else []),
        ]
        for name in required:
            if not fields.get(name):
                return self._fail(sign_type, "LACK_PARAMS", f"缺少参数{name}")
        if fields["trade_type"] != "NATIVE":
            return self._fail(
                sign_type, "INVALID_REQUEST", "this simulator supports trade_type=NATIVE only"
            )
        try:
            order = UnifiedOrder.from_fields(fields)
            if order.time_start:
                parse_v2_time(order.time_start)
            expire = parse_v2_time(order.time_expire) if order.time_expire else None
        except MalformedMessageError as exc:
            return self._fail(sign_type, "INVALID_REQUEST", exc.message)
        if order.fee_type != "CNY":
            return self._fail(sign_type, "INVALID_REQUEST", "fee_type must be CNY")
        now = self._clock.now()
        fingerprint = json.dumps(order.to_fields(), sort_keys=True, ensure_ascii=False)
        existing = self._ledger.order(order.out_trade_no)
        if existing is None:
            if expire is not None and expire < now + MIN_EXPIRE_DELAY:
                return encode_failure("time_expire时间过短，刷卡至少1分钟，其他5分钟")
            created = Order.opened(
                now,
                out_trade_no=order.out_trade_no,
                appid=self._creds.appid,
                mch_id=self._creds.mchid,
                body=order.body,
                attach=order.attach,
                total_fee=order.total_fee,
                fee_type=order.fee_type,
                notify_url=order.notify_url,
                product_id=order.product_id,
                device_info=fields.get("device_info", ""),
                time_expire=order.time_expire,
                sign_type=sign_type,
                fingerprint=fingerprint,
            )
            self._ledger.insert_order(created)
            return self._prepay_answer(sign_type, created)
        if existing.trade_state in (TradeState.SUCCESS, TradeState.REFUND):  # paid
            return self._fail(sign_type, "ORDERPAID", "该订单已支付")
        if existing.trade_state is TradeState.CLOSED:
            return self._fail(sign_type, "ORDERCLOSED", "该订单已关闭")
        if existing.fingerprint != fingerprint:
            return self._fail(sign_type, "INVALID_REQUEST", "201 商户订单号重复")
        if existing.code_issued_at + CODE_URL_LIFETIME <= now.timestamp():
            self._ledger.reissue_code(
                existing.out_trade_no,
                code_url=ids.code_url(),
                prepay_id=ids.prepay_id(now),
                at=now.timestamp(),
            )
            existing = self._ledger.order(existing.out_trade_no) or existing
        return self._prepay_answer(sign_type, existing)

    def _prepay_answer(self, sign_type: SignType, order: Order) -> bytes:
        return self._answer(
            sign_type,
            {
                "device_info": order.device_info,
                "result_code": "SUCCESS",
                "trade_type": "NATIVE",
                "prepay_id": order.prepay_id,
                "code_url": order.code_url,
            },
        )

    # pay/orderquery -----------------------------------------------------------------------

    def order_query(self, body: bytes) -> bytes:
        opened = self._open(body)
        if isinstance(opened, bytes):
            return opened
        fields, sign_type = opened
        transaction_id = fields.get("transaction_id", "")
        out_trade_no = fields.get("out_trade_no", "")
        if transaction_id:
            order = self._ledger.order_by_transaction_id(transaction_id)
        elif out_trade_no:
            order = self._ledger.order(out_trade_no)
        else:
            return self._fail(sign_type, "LACK_PARAMS", "缺少参数out_trade_no或transaction_id")
        if order is None:
            return self._fail(sign_type, "ORDERNOTEXIST", "订单不存在")
        return self._answer(sign_type, {"result_code": "SUCCESS", **status_fields(order)})

    # pay/closeorder -----------------------------------------------------------------------

    def close_order(self, body: bytes) -> bytes:
        opened = self._open(body)
        if isinstance(opened, bytes):
            return opened
        fields, sign_type = opened
        out_trade_no = fields.get("out_trade_no", "")
        if not out_trade_no:
            return self._fail(sign_type, "LACK_PARAMS", "缺少参数out_trade_no")
        order = self._ledger.order(out_trade_no)
        if order is None:
            return self._fail(sign_type, "ORDERNOTEXIST", "订单不存在")
        if order.trade_state is TradeState.NOTPAY and self._ledger.transition(
            out_trade_no,
            expected=TradeState.NOTPAY,
            new=TradeState.CLOSED,
            at=self._clock.timestamp(),
        ):
            return self._answer(sign_type, {"result_code": "SUCCESS", "result_msg": "OK"})
        order = self._ledger.order(out_trade_no) or order
        if order.trade_state is TradeState.CLOSED:
            return self._fail(sign_type, "ORDERCLOSED", "订单已关闭")
        return self._fail(sign_type, "ORDERPAID", "订单已支付，不能发起关单")

    def method_not_allowed(self) -> bytes:
        return encode_failure("REQUIRE_POST_METHOD: 请使用post方法")


def status_fields(order: Order) -> Fields:
    """The order part of a v2 query answer; payer fields only once paid."""
    fields: Fields = {
        "device_info": order.device_info,
        "out_trade_no": order.out_trade_no,
        "trade_type": "NATIVE",
        "trade_state": order.trade_state.value,
        "total_fee": order.total_fee,
        "fee_type": order.fee_type,
        "attach": order.attach,
        "trade_state_desc": STATE_DESC.get(order.trade_state, ""),
    }
    if order.trade_state in (TradeState.SUCCESS, TradeState.REFUND):
        fields.update(
            {
                "openid": order.openid,
                "is_subscribe": "N",
                "bank_type": order.bank_type,
                "cash_fee": order.total_fee,
                "transaction_id": order.transaction_id or "",
                "time_end": order.time_end,
            }
        )
    return fields
