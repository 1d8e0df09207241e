"""API v3 validation and error semantics over raw signed HTTP, with every answer (200, 204,
4xx) checked as an SDK would: ``Request-ID``, ``Wechatpay-Signature-Type`` and a signature over
the exact bytes (empty for 204) by the key the caller's mode expects."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest

from scanpay.simulator import Simulator
from scanpay.wechat.keys import TrustStore, load_certificate, load_private_key, load_public_key
from scanpay.wechat.v3.sign import V3Merchant, build_authorization
from scanpay.wechat.v3.verify import verify_response

MODES = ["public-key", "certificate"]


class Caller:
    """A merchant sending hand-made, correctly signed v3 requests and verifying answers."""

    def __init__(self, sim: Simulator, http: httpx.AsyncClient, mode: str) -> None:
        creds = sim.credentials
        self.sim = sim
        self.http = http
        self.mode = mode
        self.merchant = V3Merchant(
            creds.mchid,
            creds.merchant_serial_no,
            load_private_key(creds.merchant_private_key_pem.reveal()),
        )
        self.trust = TrustStore()
        if mode == "public-key":
            self.trust.add_public_key(
                creds.wechatpay_public_key_id, load_public_key(creds.wechatpay_public_key_pem)
            )
        else:
            self.trust.add_certificate(load_certificate(creds.platform_certificate_pem))

    async def call(self, method: str, target: str, body: object = None) -> httpx.Response:
        raw = b"" if body is None else json.dumps(body).encode()
        now = int(time.time())
        headers = {
            "Authorization": build_authorization(
                self.merchant, method, target, raw, timestamp=now, nonce=secrets.token_hex(16)
            ),
            "Accept": "application/json",
        }
        if raw:
            headers["Content-Type"] = "application/json"
        if self.mode == "public-key":
            headers["Wechatpay-Serial"] = self.sim.credentials.wechatpay_public_key_id
        answer = await self.http.request(method, target, content=raw, headers=headers)
        # every answer: signed over its exact bytes, typed, with a Request-ID
        assert answer.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
        assert answer.headers["Request-ID"]
        verify_response(answer.headers, answer.content, self.trust, now=int(time.time()))
        return answer

    def prepay_body(self, out_trade_no: str = "sem-0001", **changes: object) -> dict[str, object]:
        creds = self.sim.credentials
        body: dict[str, object] = {
            "appid": creds.appid,
            "mchid": creds.mchid,
            "description": "Longjing, 50 g",
            "out_trade_no": out_trade_no,
            "notify_url": "https://shop.test/notify/v3",
            "amount": {"total": 4200, "currency": "CNY"},
        }
        body.update(changes)
        return body


@pytest.fixture(params=MODES)
async def caller(sim: Simulator, raw: httpx.AsyncClient, request: pytest.FixtureRequest) -> Caller:
    return Caller(sim, raw, request.param)


def code(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["code"]


PREPAY = "/v3/pay/transactions/native"


@pytest.mark.parametrize(
    "change",
    [
        {"description": None},
        {"out_trade_no": "ab"},  # 6 to 32 characters
        {"out_trade_no": "has space 01"},
        {"amount": {"total": 0}},
        {"amount": {"total": "100"}},
        {"amount": None},
        {"notify_url": "ftp://shop.test/n"},
        {"time_expire": "tomorrow"},
    ],
)
async def test_required_fields_and_formats(caller: Caller, change: dict[str, object]) -> None:
    merged = {**caller.prepay_body(), **change}
    body = {k: v for k, v in merged.items() if v is not None}
    answer = await caller.call("POST", PREPAY, body)
    assert code(answer) == (400, "PARAM_ERROR")
    assert caller.sim.ledger.orders() == []


async def test_merchant_and_app_must_match(caller: Caller) -> None:
    assert code(await caller.call("POST", PREPAY, caller.prepay_body(mchid="1900000000"))) == (
        400,
        "MCH_NOT_EXISTS",
    )
    assert code(await caller.call("POST", PREPAY, caller.prepay_body(appid="wx0000"))) == (
        400,
        "APPID_MCHID_NOT_MATCH",
    )


async def test_same_request_same_code_url_other_parameters_refused(caller: Caller) -> None:
    first = await caller.call("POST", PREPAY, caller.prepay_body())
    again = await caller.call("POST", PREPAY, caller.prepay_body())
    assert first.status_code == again.status_code == 200
    assert first.json()["code_url"] == again.json()["code_url"]
    other = await caller.call("POST", PREPAY, caller.prepay_body(description="Another tea"))
    assert code(other) == (403, "OUT_TRADE_NO_USED")


async def test_closed_paid_and_missing_orders(caller: Caller) -> None:
    mchid = caller.sim.credentials.mchid
    await caller.call("POST", PREPAY, caller.prepay_body("sem-closed"))
    closed = await caller.call(
        "POST", "/v3/pay/transactions/out-trade-no/sem-closed/close", {"mchid": mchid}
    )
    assert (closed.status_code, closed.content) == (204, b"")  # signed over empty bytes
    again = await caller.call("POST", PREPAY, caller.prepay_body("sem-closed"))
    assert code(again) == (400, "ORDER_CLOSED")

    await caller.call("POST", PREPAY, caller.prepay_body("sem-paid"))
    await caller.sim.pay(out_trade_no="sem-paid")
    assert code(await caller.call("POST", PREPAY, caller.prepay_body("sem-paid"))) == (
        403,
        "TRADE_ERROR",
    )
    close_paid = await caller.call(
        "POST", "/v3/pay/transactions/out-trade-no/sem-paid/close", {"mchid": mchid}
    )
    assert code(close_paid) == (403, "TRADE_ERROR")

    missing = await caller.call("GET", f"/v3/pay/transactions/out-trade-no/sem-none?mchid={mchid}")
    assert code(missing) == (404, "ORDER_NOT_EXIST")
    by_id = await caller.call("GET", f"/v3/pay/transactions/id/4200000000000000?mchid={mchid}")
    assert code(by_id) == (404, "ORDER_NOT_EXIST")
    unknown_close = await caller.call(
        "POST", "/v3/pay/transactions/out-trade-no/sem-none/close", {"mchid": mchid}
    )
    assert code(unknown_close) == (404, "ORDER_NOT_EXIST")
