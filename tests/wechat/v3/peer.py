"""A minimal WeChat Pay v3 peer for client tests, built only from scanpay's own pure core.

Real HTTP through ``httpx.ASGITransport``: it verifies each request's Authorization over the
raw target and body, and signs each answer. Knobs let a test tamper with answers, shift their
timestamps, sign with another key, inject error answers, or rotate platform certificates.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from scanpay.errors import ScanpayError
from scanpay.wechat.bill import BillRow, build_bill
from scanpay.wechat.fields import BEIJING
from scanpay.wechat.keys import TrustStore, certificate_serial
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import RefundState, TradeState
from scanpay.wechat.v3.apierror import error_body
from scanpay.wechat.v3.bills import (
    BillDescriptor,
    FundFlowRow,
    FundFlowSummary,
    build_fund_flow_bill,
)
from scanpay.wechat.v3.certificates import build_certificates
from scanpay.wechat.v3.jsonbody import dump_json
from scanpay.wechat.v3.notify import build_notification
from scanpay.wechat.v3.refunds import Refund, parse_refund_request
from scanpay.wechat.v3.sign import verify_request
from scanpay.wechat.v3.transactions import Transaction, code_url_body, parse_native_prepay
from scanpay.wechat.v3.verify import sign_response
from tests.wechat.v3.factories import API_V3_KEY, APPID, MCHID, NOW

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Seen:
    method: str
    target: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Peer:
    merchant_keys: TrustStore
    signer_serial: str
    signer_key: RSAPrivateKey
    certificates: list[x509.Certificate] = field(default_factory=list)
    now: int = NOW
    api_v3_key: Secret = field(default_factory=lambda: Secret(API_V3_KEY))
    # knobs
    faults: list[tuple[int, str]] = field(default_factory=list)
    tamper: bool = False
    skew: int = 0
    drop_header: str = ""
    seen: list[Seen] = field(default_factory=list)
    orders: dict[str, Transaction] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    bill_gzip: bool = False

    def use_certificate(self, cert: x509.Certificate, key: RSAPrivateKey) -> None:
        self.signer_serial, self.signer_key = certificate_serial(cert), key
        if cert not in self.certificates:
            self.certificates.append(cert)

    def signed(self, body: bytes) -> dict[str, str]:
        headers = sign_response(
            body,
            serial=self.signer_serial,
            private_key=self.signer_key,
            timestamp=self.now + self.skew,
            nonce="peer-nonce",
        )
        headers.pop(self.drop_header, None)
        return headers

    def notification(self, resource: Transaction | Refund) -> tuple[dict[str, str], bytes]:
        body = build_notification(
            resource,
            self.api_v3_key,
            notification_id="EV-0001",
            create_time=datetime(2024, 1, 1, 12, 0, tzinfo=BEIJING),
            nonce="notifynonce1",
        )
        return self.signed(body), body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = raw_path.decode() + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.seen.append(Seen(scope["method"], target, body, headers))
        status, payload = self.answer(scope["method"], target, body, headers)
        out = self.signed(payload)
        if self.tamper and payload:
            payload = payload[:-1] + b" "
        raw_headers = [(k.encode(), v.encode()) for k, v in out.items()]
        raw_headers.append((b"request-id", b"08F7-REQ-1"))
        raw_headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})

    def answer(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        try:
            verify_request(
                headers.get("authorization", ""),
                method,
                target,
                body,
                self.merchant_keys,
                now=self.now,
            )
        except ScanpayError as exc:
            return 401, error_body("SIGN_ERROR", type(exc).__name__)
        if self.faults:
            status, code = self.faults.pop(0)
            return status, error_body(code, "injected")
        path, _, query = target.partition("?")
        try:
            return self.route(method, path, query, body)
        except ScanpayError as exc:
            return 400, error_body("PARAM_ERROR", exc.message)

    def route(self, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
        if (method, path) == ("POST", "/v3/pay/transactions/native"):
            order = parse_native_prepay(body)
            self.orders[order.out_trade_no] = Transaction(
                order.appid, order.mchid, order.out_trade_no, TradeState.NOTPAY, total=order.total
            )
            return 200, code_url_body("weixin://wxpay/bizpayurl?pr=" + order.out_trade_no[-6:])
        if path.startswith("/v3/pay/transactions/out-trade-no/"):
            rest = path.removeprefix("/v3/pay/transactions/out-trade-no/")
            if method == "POST" and rest.endswith("/close"):
                return 204, b""
            if rest not in self.orders:
                return 404, error_body("ORDER_NOT_EXIST", "订单不存在")
            return 200, dump_json(self.orders[rest].to_json())
        if path.startswith("/v3/pay/transactions/id/"):
            tid = path.removeprefix("/v3/pay/transactions/id/")
            for known in self.orders.values():
                if known.transaction_id == tid:
                    return 200, dump_json(known.to_json())
            return 404, error_body("ORDERNOTEXIST", "订单不存在")
        if (method, path) == ("POST", "/v3/refund/domestic/refunds"):
            app = parse_refund_request(body)
            refund = Refund(
                app.out_refund_no,
                "5030000001",
                RefundState.PROCESSING,
                out_trade_no=app.out_trade_no,
                total=app.total,
                refund=app.refund,
            )
            self.refunds[app.out_refund_no] = refund
            return 200, dump_json(refund.to_json())
        if method == "GET" and path.startswith("/v3/refund/domestic/refunds/"):
            number = path.rsplit("/", 1)[1]
            if number not in self.refunds:
                return 404, error_body("RESOURCE_NOT_EXISTS", "退款单不存在")
            return 200, dump_json(self.refunds[number].to_json())
        if path == "/v3/certificates":
            nonces = [f"certnonce{i:03d}" for i in range(len(self.certificates))]
            return 200, build_certificates(self.certificates, self.api_v3_key, nonces=nonces)
        if path in ("/v3/bill/tradebill", "/v3/bill/fundflowbill"):
            kind = "trade" if path.endswith("tradebill") else "fund"
            content = self.bill_file(kind)
            return 200, BillDescriptor(
                f"https://api.mch.weixin.qq.com/v3/billdownload/file?token={kind}",
                hashlib.sha1(content).hexdigest(),
            ).to_json()
        if path == "/v3/billdownload/file":
            return 200, self.bill_file("trade" if query == "token=trade" else "fund")
        return 404, error_body("NOT_FOUND", "no such path")

    def bill_file(self, kind: str) -> bytes:
        if kind == "trade":
            row = BillRow(trade_time="2024-01-01 12:00:05", appid=APPID, mch_id=MCHID,
                          out_trade_no="order_000001", trade_state="SUCCESS",
                          settlement_total_fen=100, order_fen=100, fee_fen=1)  # fmt: skip
            text = build_bill([row])
        else:
            text = build_fund_flow_bill(
                [
                    FundFlowRow(
                        "2024-01-01 12:00:05",
                        "42",
                        "19",
                        "交易",
                        "交易",
                        "收入",
                        100,
                        100,
                        "s",
                        "",
                        "42",
                    )
                ],
                FundFlowSummary(1, 1, 100, 0, 0),
            )
        data = text.encode()
        return gzip.compress(data, mtime=0) if self.bill_gzip else data
