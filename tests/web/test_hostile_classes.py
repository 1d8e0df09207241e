"""One table of hostile-input classes drives API v2 and v3 alike (issue 9): the same status,
the same recorded outcome, the same alert, and nothing else changed. ``/notify/v2`` always
answers WeChat's XML; an authentic v2 notification that reports a failure is acknowledged,
recorded, and changes nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.store.tables import notifications_received
from scanpay.wechat.keys import load_private_key
from scanpay.wechat.states import SignType, TradeState
from scanpay.wechat.v2.notify import build_payment_notification, is_success_ack
from scanpay.wechat.v2.sign import sign_v2
from scanpay.wechat.v3.notify import build_notification
from scanpay.wechat.v3.transactions import Transaction
from scanpay.wechat.v3.verify import sign_response
from scanpay.wechat.xmlcodec import dump_xml
from tests.web.conftest import SettingsFactory, Shop
from tests.web.v3kit import open_shop

OTHER_MCHID = "1234567890"


@dataclass(frozen=True)
class Case:
    """A kind of input; what both APIs must make of it."""

    name: str
    status: int  # 2 = any 2xx (v2 answers 200 with XML, v3 204)
    outcome: str | None  # the notifications_received outcome; None: nothing recorded
    alert: str | None  # the alert reason raised, if any


CASES = [
    Case("genuine", 2, "applied", None),
    Case("repeated genuine", 2, "duplicate", None),
    Case("wrong content type", 415, "wrong_content_type", None),
    Case("unsigned", 401, "unsigned", None),
    Case("bad signature", 401, "bad_signature", None),
    Case("malformed", 400, "malformed", None),
    Case("another merchant", 422, "rejected", "mchid_mismatch"),
    Case("unknown order", 422, "rejected", "unknown_out_trade_no"),
    Case("amount mismatch", 422, "rejected", "amount_mismatch"),
    Case("oversized", 413, None, None),
]

Request = tuple[bytes, dict[str, str]]
Builder = Callable[[dict[str, Any], Case], Request | None]


def v2_fields(shop: Shop, order: dict[str, Any], case: Case) -> dict[str, str | int]:
    return {
        "appid": shop.settings.appid,
        "mch_id": OTHER_MCHID if case.name == "another merchant" else shop.settings.mchid,
        "nonce_str": "n0nce",
        "total_fee": 1 if case.name == "amount mismatch" else order["amount"],
        "fee_type": "CNY",
        "transaction_id": "4200000000000000000000000077",
        "out_trade_no": "sp0000000000000000nosuch01"
        if case.name == "unknown order"
        else order["out_trade_no"],
        "time_end": "20260101120000",
    }


def v2_builder(shop: Shop) -> Builder:
    key = shop.sim.credentials.api_v2_key
    xml = {"Content-Type": "text/xml"}

    def build(order: dict[str, Any], case: Case) -> Request:
        fields = v2_fields(shop, order, case)
        body = build_payment_notification(fields, key, SignType.HMAC_SHA256)
        if case.name == "wrong content type":
            return body, {"Content-Type": "application/json"}
        if case.name == "unsigned":
            return dump_xml({"return_code": "SUCCESS", "result_code": "SUCCESS", **fields}), xml
        if case.name == "bad signature":
            tampered = body.replace(b"n0nce", b"n0ncE")
            assert tampered != body
            return tampered, xml
        if case.name == "malformed":
            return b"<xml><a>1</a><a>2</a></xml>", xml
        if case.name == "oversized":
            return b"<xml><a>" + b"x" * 70_000 + b"</a></xml>", xml
        return body, xml

    return build


def v3_builder(shop: Shop, keys: SimulatorKeys) -> Builder:
    creds = shop.sim.credentials
    signer = load_private_key(keys.wechatpay_private_key_pem.reveal())

    def build(order: dict[str, Any], case: Case) -> Request:
        amount = 1 if case.name == "amount mismatch" else order["amount"]
        transaction = Transaction(
            appid=creds.appid,
            mchid=OTHER_MCHID if case.name == "another merchant" else creds.mchid,
            out_trade_no="sp0000000000000000nosuch01"
            if case.name == "unknown order"
            else order["out_trade_no"],
            trade_state=TradeState.SUCCESS,
            transaction_id="4200000000000000000000000077",
            trade_type="NATIVE",
            success_time=datetime.now(UTC),
            total=amount,
            payer_total=amount,
        )
        body = build_notification(
            transaction,
            creds.api_v3_key,
            notification_id="EV-2026010112000000077",
            create_time=datetime.now(UTC),
            nonce="abcdefghijkl",
        )
        if case.name == "malformed":
            body = b"signed, but not JSON"
        if case.name == "oversized":
            body = b"{" + b" " * 70_000 + b"}"
        headers = sign_response(
            body,
            serial=creds.wechatpay_public_key_id,
            private_key=signer,
            timestamp=int(time.time()),
            nonce="N0NCE" + "x" * 27,
        )
        headers = {**headers, "Content-Type": "application/json"}
        if case.name == "wrong content type":
            headers["Content-Type"] = "text/xml"
        if case.name == "unsigned":
            headers = {k: v for k, v in headers.items() if k.lower() != "wechatpay-signature"}
        if case.name == "bad signature":
            tampered = body.replace(b'"summary"', b'"summarY"')
            assert tampered != body
            body = tampered
        return body, headers

    return build


@pytest.fixture(params=["v2", "v3"])
async def kit(
    request: pytest.FixtureRequest,
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[tuple[str, Shop, Builder]]:
    mode = "v2" if request.param == "v2" else "v3-public-key"
    async for shop in open_shop(make_settings, tmp_path, credentials, mode):
        builder = v2_builder(shop) if mode == "v2" else v3_builder(shop, credentials[1])
        yield request.param, shop, builder


def last_receipt(shop: Shop) -> dict[str, Any] | None:
    with shop.context.store.engine.connect() as conn:
        query = sa.select(notifications_received).order_by(notifications_received.c.id.desc())
        row = conn.execute(query.limit(1)).first()
    return None if row is None else dict(row._mapping)


def money_rows(shop: Shop) -> list[tuple[Any, ...]]:
    """Orders (an alert bumps an order's event sequence, nothing else), attempts, keys."""
    queries = (
        "SELECT id, amount, currency, status, expires_at FROM orders",
        "SELECT * FROM payment_attempts",
        "SELECT * FROM idempotency_keys",
    )
    with shop.context.store.engine.connect() as conn:
        return [tuple(r) for query in queries for r in conn.execute(sa.text(query))]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_one_answer_per_kind_of_input(kit: tuple[str, Shop, Builder], case: Case) -> None:
    api, shop, build = kit
    order = await shop.create_order(1999)
    path = f"/notify/{api}"
    if case.name == "repeated genuine":
        body, headers = build(order, case) or (b"", {})
        assert (await shop.http.post(path, content=body, headers=headers)).is_success
    request = build(order, case)
    assert request is not None
    body, headers = request
    before_rows = money_rows(shop)
    before_receipts = shop.count("notifications_received")

    response = await shop.http.post(path, content=body, headers=headers)

    if case.status == 2:
        assert response.is_success, response.text
    else:
        assert response.status_code == case.status, response.text
    if api == "v2":  # always WeChat's XML, whatever the status
        assert response.headers["content-type"].startswith("text/xml")
        assert is_success_ack(response.content) == response.is_success
    elif not response.is_success:
        assert response.json()["code"] == "FAIL"
    receipt = last_receipt(shop)
    if case.outcome is None:
        assert shop.count("notifications_received") == before_receipts
    else:
        assert shop.count("notifications_received") == before_receipts + 1
        assert receipt is not None
        assert receipt["outcome"] == case.outcome
    alerts = [a.data["reason"] for a in shop.context.store.alerts_sync()]
    assert alerts == ([case.alert] if case.alert else [])
    status = (await shop.http.get(f"/api/orders/{order['id']}")).json()["status"]
    if case.name in ("genuine", "repeated genuine"):
        assert status == "paid"
        assert shop.event_types(order["id"]).count("paid") == 1
    else:
        assert status == "pending"
        assert money_rows(shop) == before_rows


async def test_refused_bodies_are_kept_as_digest_and_first_bytes(
    kit: tuple[str, Shop, Builder],
) -> None:
    api, shop, build = kit
    order = await shop.create_order(1999)
    body, headers = build(order, Case("bad signature", 401, "bad_signature", None)) or (b"", {})
    await shop.http.post(f"/notify/{api}", content=body, headers=headers)
    receipt = last_receipt(shop)
    assert receipt is not None
    keep = shop.settings.notify_refused_body_bytes
    assert receipt["body"] == body[:keep]
    assert len(body) > keep
    assert receipt["body_size"] == len(body)
    assert len(receipt["body_sha256"]) == 64
    assert receipt["client"] == "127.0.0.1"


async def test_an_authentic_failure_report_is_acknowledged_and_changes_nothing(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> None:
    """API v2 only: API v3 sends no notification for a failed payment."""
    async for shop in open_shop(make_settings, tmp_path, credentials, "v2"):
        await _failure_report(shop)


async def _failure_report(shop: Shop) -> None:
    order = await shop.create_order(1999)
    key = shop.sim.credentials.api_v2_key
    fields: dict[str, str | int] = {
        "return_code": "SUCCESS",
        "result_code": "FAIL",
        "err_code": "NOTENOUGH",
        "err_code_des": "insufficient balance",
        "appid": shop.settings.appid,
        "mch_id": shop.settings.mchid,
        "nonce_str": "n0nce",
        "out_trade_no": order["out_trade_no"],
        "total_fee": order["amount"],
        "sign_type": "HMAC-SHA256",
    }
    fields["sign"] = sign_v2(fields, key, SignType.HMAC_SHA256)
    before = shop.snapshot()
    response = await shop.http.post(
        "/notify/v2", content=dump_xml(fields), headers={"Content-Type": "text/xml"}
    )
    assert response.status_code == 200
    assert is_success_ack(response.content)  # WeChat stops repeating it
    assert shop.snapshot() == before  # orders, attempts, events, keys: nothing changed
    receipt = last_receipt(shop)
    assert receipt is not None
    assert (receipt["outcome"], receipt["out_trade_no"]) == ("noted", order["out_trade_no"])
    assert "NOTENOUGH" in receipt["detail"]
    assert receipt["body_sha256"] is None  # authentic: kept whole


async def test_notify_v2_answers_xml_even_on_a_server_error(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> None:
    async for shop in open_shop(make_settings, tmp_path, credentials, "v2"):
        shop.app.state.doorkeeper = None  # breaks the handler: a 500
        transport = httpx.ASGITransport(app=shop.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            answer = await http.post("/notify/v2", content=b"<xml/>")
            v3 = await http.post("/notify/v3", content=b"{}")
        assert answer.status_code == 500
        assert answer.headers["content-type"].startswith("text/xml")
        assert not is_success_ack(answer.content)
        assert v3.status_code == 500
