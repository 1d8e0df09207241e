"""WeChat Pay API v3 Native endpoints, answered and signed as WeChat does (PROTOCOL.md 3).

Every request must carry a valid ``Authorization`` (merchant certificate, 5-minute window
against real time) over the raw request target and body, else ``401 SIGN_ERROR``. Every
answer, errors and empty 204s included, carries ``Request-ID`` and the ``Wechatpay-*``
signature headers. The signing key follows the merchant: a request whose ``Wechatpay-Serial``
names the WeChat Pay public key (``PUB_KEY_ID_...``) gets answers signed by that key;
otherwise the platform certificate signs. Orders remember the choice for their notifications.
Simulated business time (orders, expiry) comes from the simulator's clock; signature
timestamps use real time, because that is what SDKs check them against.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from scanpay.errors import MalformedMessageError, SignatureError
from scanpay.simulator import faults, ids
from scanpay.simulator.clock import SimClock
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.simulator.faults import Fault
from scanpay.simulator.ledger import Ledger, Order
from scanpay.simulator.pubkeys import PublicKeyRing
from scanpay.simulator.rotation import KeyRing
from scanpay.simulator.v2api import CODE_URL_LIFETIME, STATE_DESC
from scanpay.wechat.fields import BEIJING, format_v2_time, parse_v2_time
from scanpay.wechat.keys import (
    TrustStore,
    is_public_key_id,
    load_certificate,
)
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v3.apierror import error_body
from scanpay.wechat.v3.certificates import build_certificates
from scanpay.wechat.v3.jsonbody import dump_json, parse_json, text
from scanpay.wechat.v3.sign import verify_request
from scanpay.wechat.v3.transactions import Transaction, code_url_body, parse_native_prepay
from scanpay.wechat.v3.verify import REQUEST_ID, SIGNATURE_TYPE, sign_response

PUBLIC_KEY: Final = "public_key"
PLATFORM: Final = "platform"
MIN_EXPIRE: Final = timedelta(minutes=1)


@dataclass(frozen=True)
class V3Answer:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class V3Request:
    method: str
    target: str  # raw path and query, exactly as sent
    body: bytes
    headers: Mapping[str, str]  # lower-case names


class V3Api:
    def __init__(
        self,
        creds: MerchantCredentials,
        keys: SimulatorKeys,
        ledger: Ledger,
        clock: SimClock,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._creds = creds
        self._ledger = ledger
        self._clock = clock
        self._wall = wall_clock
        self._merchant_keys = TrustStore(
            certificates=[load_certificate(creds.merchant_certificate_pem)]
        )
        #: platform certificates (rotation: scanpay.simulator.rotation)
        self.keyring = KeyRing(creds, keys)
        #: WeChat Pay public keys (rotation: scanpay.simulator.pubkeys)
        self.public_keys = PublicKeyRing(creds, keys)

    # signing ------------------------------------------------------------------------------

    @staticmethod
    def signer_for(request: V3Request) -> str:
        serial = request.headers.get("wechatpay-serial", "")
        return PUBLIC_KEY if serial and is_public_key_id(serial) else PLATFORM

    def signed_headers(self, body: bytes, signer: str) -> dict[str, str]:
        active = faults.active()  # injected faults (scanpay.simulator.faults)
        if signer == PUBLIC_KEY or Fault.NEW_MERCHANT in active:
            pair = self.public_keys.active()
            serial, key = pair.key_id, pair.private_key
        else:
            current = self.keyring.current()
            serial, key = current.serial, current.private_key
        serial, timestamp = faults.adjust_signing(active, serial, int(self._wall()))
        headers = sign_response(
            body,
            serial=serial,
            private_key=key,
            timestamp=timestamp,
            nonce=secrets.token_hex(16).upper(),
        )
        headers[SIGNATURE_TYPE] = "WECHATPAY2-SHA256-RSA2048"
        faults.tamper_signature(active, headers)
        return headers

    def _answer(
        self, request: V3Request, status: int, body: bytes = b"", *, signer: str = ""
    ) -> V3Answer:
        headers = self.signed_headers(body, signer or self.signer_for(request))
        headers[REQUEST_ID] = secrets.token_hex(16)
        if body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return V3Answer(status, body, headers)

    def _error(self, request: V3Request, status: int, code: str, message: str) -> V3Answer:
        return self._answer(request, status, error_body(code, message))

    def _authenticate(self, request: V3Request) -> V3Answer | None:
        authorization = request.headers.get("authorization", "")
        try:
            auth = verify_request(
                authorization,
                request.method,
                request.target,
                request.body,
                self._merchant_keys,
                now=int(self._wall()),
            )
        except (SignatureError, MalformedMessageError) as exc:
            return self._error(request, 401, "SIGN_ERROR", f"签名错误: {exc.message}")
        if auth.mchid != self._creds.mchid:
            return self._error(request, 401, "SIGN_ERROR", "签名错误: mchid不匹配")
        return None

    # endpoints ----------------------------------------------------------------------------

    def native_prepay(self, request: V3Request) -> V3Answer:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        try:
            order = parse_native_prepay(request.body)
        except MalformedMessageError as exc:
            return self._error(request, 400, "PARAM_ERROR", exc.message)
        if order.mchid != self._creds.mchid:
            return self._error(request, 400, "MCH_NOT_EXISTS", "商户号不存在")
        if order.appid != self._creds.appid:
            return self._error(request, 400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if order.currency != "CNY":
            return self._error(request, 400, "PARAM_ERROR", "amount.currency must be CNY")
        now = self._clock.now()
        fingerprint = json.dumps(order.to_json(), sort_keys=True, ensure_ascii=False)
        existing = self._ledger.order(order.out_trade_no)
        if existing is not None:
            if existing.trade_state in (TradeState.SUCCESS, TradeState.REFUND):  # paid
                return self._error(request, 403, "TRADE_ERROR", "该订单已支付")
            if existing.trade_state is TradeState.CLOSED:
                return self._error(request, 400, "ORDER_CLOSED", "订单已关闭")
            if existing.fingerprint != fingerprint:
                return self._error(request, 403, "OUT_TRADE_NO_USED", "商户订单号重复")
            if existing.code_issued_at + CODE_URL_LIFETIME <= now.timestamp():
                self._ledger.reissue_code(
                    existing.out_trade_no,
                    code_url=ids.code_url(),
                    prepay_id=ids.prepay_id(now),
                    at=now.timestamp(),
                )
                existing = self._ledger.order(existing.out_trade_no) or existing
            return self._answer(request, 200, code_url_body(existing.code_url))
        expire = ""
        if order.time_expire is not None:
            expire = format_v2_time(max(order.time_expire, now + MIN_EXPIRE))
        created = Order.opened(
            now,
            out_trade_no=order.out_trade_no,
            appid=order.appid,
            mch_id=order.mchid,
            body=order.description,
            attach=order.attach,
            total_fee=order.total,
            fee_type=order.currency,
            notify_url=order.notify_url,
            product_id="",
            device_info="",
            time_expire=expire,
            sign_type=SignType.MD5,
            fingerprint=fingerprint,
            api="v3",
            signer=self.signer_for(request),
        )
        self._ledger.insert_order(created)
        return self._answer(request, 200, code_url_body(created.code_url))

    def _mchid_param(self, request: V3Request) -> V3Answer | None:
        _, _, query = request.target.partition("?")
        params = dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
        if params.get("mchid") != self._creds.mchid:
            return self._error(request, 400, "PARAM_ERROR", "mchid is missing or not yours")
        return None

    def query_by_out_trade_no(self, request: V3Request, out_trade_no: str) -> V3Answer:
        return self._query(request, self._ledger.order(out_trade_no))

    def query_by_transaction_id(self, request: V3Request, transaction_id: str) -> V3Answer:
        return self._query(request, self._ledger.order_by_transaction_id(transaction_id))

    def _query(self, request: V3Request, order: Order | None) -> V3Answer:
        refused = self._authenticate(request) or self._mchid_param(request)
        if refused is not None:
            return refused
        if order is None:
            return self._error(request, 404, "ORDER_NOT_EXIST", "订单不存在")
        return self._answer(request, 200, dump_json(transaction(order).to_json()))

    def close(self, request: V3Request, out_trade_no: str) -> V3Answer:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        try:
            mchid = text(parse_json(request.body), "mchid")
        except MalformedMessageError as exc:
            return self._error(request, 400, "PARAM_ERROR", exc.message)
        if mchid != self._creds.mchid:
            return self._error(request, 400, "MCH_NOT_EXISTS", "商户号不存在")
        order = self._ledger.order(out_trade_no)
        if order is None:
            return self._error(request, 404, "ORDER_NOT_EXIST", "订单不存在")
        if order.trade_state is TradeState.NOTPAY:
            self._ledger.transition(
                out_trade_no,
                expected=TradeState.NOTPAY,
                new=TradeState.CLOSED,
                at=self._clock.timestamp(),
            )
            order = self._ledger.order(out_trade_no) or order
        if order.trade_state is TradeState.CLOSED:
            return self._answer(request, 204)  # closing a closed order succeeds again
        return self._error(request, 403, "TRADE_ERROR", "订单已支付，不能关单")

    def certificates(self, request: V3Request) -> V3Answer:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        # A new merchant (public-key mode only) has no platform certificate at all.
        listed = [] if Fault.NEW_MERCHANT in faults.active() else self.keyring.listed()
        body = build_certificates(
            listed, self._creds.api_v3_key, nonces=[secrets.token_hex(6) for _ in listed]
        )
        # Signed by the platform key whatever the caller trusts: that is the point of it.
        return self._answer(request, 200, body, signer=PLATFORM)

    def notification_key(self, order: Order) -> tuple[str, RSAPrivateKey]:
        """(serial, private key) that signs ``order``'s notifications now, faults aside."""
        if order.signer == PUBLIC_KEY:
            pair = self.public_keys.active()
            return pair.key_id, pair.private_key
        current = self.keyring.current()
        return current.serial, current.private_key

    def sign_notification(self, body: bytes, order: Order) -> dict[str, str]:
        """Fresh signature headers for one delivery attempt of a v3 notification."""
        headers = self.signed_headers(body, order.signer or PLATFORM)
        headers["Content-Type"] = "application/json"
        return headers


def transaction(order: Order) -> Transaction:
    """The v3 Transaction object of a ledger order."""
    paid = order.trade_state in (TradeState.SUCCESS, TradeState.REFUND)
    return Transaction(
        appid=order.appid,
        mchid=order.mch_id,
        out_trade_no=order.out_trade_no,
        trade_state=order.trade_state,
        trade_state_desc=STATE_DESC.get(order.trade_state, ""),
        transaction_id=(order.transaction_id or "") if paid else "",
        trade_type="NATIVE" if paid else "",
        bank_type=order.bank_type if paid else "",
        attach=order.attach,
        success_time=parse_v2_time(order.time_end).astimezone(BEIJING) if paid else None,
        payer_openid=order.openid if paid else "",
        total=order.total_fee,
        payer_total=order.total_fee if paid else 0,
        currency=order.fee_type,
        payer_currency=order.fee_type,
    )
