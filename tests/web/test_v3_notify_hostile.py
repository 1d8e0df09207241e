"""Hostile input on POST /notify/v3 (and /notify/v3/refund, /notify/v2/refund): a clear error
answer, and no business row changed (orders, attempts, events, idempotency keys, refunds)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.wechat.keys import load_private_key
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import TradeState
from scanpay.wechat.v3.notify import build_notification
from scanpay.wechat.v3.transactions import Transaction
from scanpay.wechat.v3.verify import sign_response
from tests.web.conftest import SettingsFactory, Shop
from tests.web.v3kit import open_shop

Build = Callable[..., tuple[bytes, dict[str, str]]]


@pytest.fixture
async def shop(
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[Shop]:
    async for opened in open_shop(make_settings, tmp_path, credentials, "v3-public-key"):
        yield opened


@pytest.fixture
def build(shop: Shop, credentials: tuple[MerchantCredentials, SimulatorKeys]) -> Build:
    """A TRANSACTION.SUCCESS for an order, signed as WeChat Pay would (public-key mode)."""
    creds, keys = credentials
    signer = load_private_key(keys.wechatpay_private_key_pem.reveal())

    def make(
        order: dict[str, Any],
        *,
        amount: int | None = None,
        api_v3_key: Secret | None = None,
        serial: str | None = None,
        timestamp: int | None = None,
        body: bytes | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        transaction = Transaction(
            appid=creds.appid,
            mchid=creds.mchid,
            out_trade_no=order["out_trade_no"],
            trade_state=TradeState.SUCCESS,
            transaction_id="4200000000202601010000000042",
            trade_type="NATIVE",
            success_time=datetime.now(UTC),
            total=order["amount"] if amount is None else amount,
            payer_total=order["amount"] if amount is None else amount,
        )
        if body is None:
            body = build_notification(
                transaction,
                api_v3_key or creds.api_v3_key,
                notification_id="EV-2026010112000000001",
                create_time=datetime.now(UTC),
                nonce="abcdefghijkl",
            )
        headers = sign_response(
            body,
            serial=serial or creds.wechatpay_public_key_id,
            private_key=signer,
            timestamp=int(time.time()) if timestamp is None else timestamp,
            nonce="N0NCE" + "x" * 27,
        )
        return body, {**headers, "Content-Type": "application/json"}

    return make


def business_rows(shop: Shop) -> list[tuple[Any, ...]]:
    rows = shop.snapshot()
    with shop.context.store.engine.connect() as conn:
        rows += [tuple(r) for r in conn.execute(sa.text("SELECT * FROM refunds"))]
    return rows


async def post(shop: Shop, body: bytes, headers: dict[str, str], path: str = "/notify/v3") -> Any:
    return await shop.http.post(path, content=body, headers=headers)


async def test_a_genuine_notification_pays_once(shop: Shop, build: Build) -> None:
    order = await shop.create_order(1234)
    body, headers = build(order)
    for _ in range(3):  # duplicates are acknowledged, applied once
        response = await post(shop, body, headers)
        assert response.status_code == 204
    assert (await shop.http.get(f"/api/orders/{order['id']}")).json()["status"] == "paid"
    assert shop.event_types(order["id"]).count("paid") == 1


CASES: list[tuple[str, dict[str, Any], int]] = [
    ("wrong API v3 key", {"api_v3_key": Secret("w" * 32)}, 400),
    ("unknown serial", {"serial": "PUB_KEY_ID_0000000000000000000000000000"}, 401),
    (
        "unknown certificate serial",
        {"serial": "5157F09EFDC096DE15EBE81A47057A72" + "00000000"},
        401,
    ),
    ("replayed: 6 minutes old", {"timestamp_offset": -360}, 401),
    ("from the future", {"timestamp_offset": 360}, 401),
    ("signed garbage", {"body": b"not json at all"}, 400),
    ("signed JSON of the wrong shape", {"body": b'{"id": 1, "resource": []}'}, 400),
    ("signed empty object", {"body": b"{}"}, 400),
]


@pytest.mark.parametrize(("changes", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("path", ["/notify/v3", "/notify/v3/refund"])
async def test_hostile_v3_notification_changes_nothing(
    shop: Shop, build: Build, changes: dict[str, Any], status: int, path: str
) -> None:
    order = await shop.create_order(1999)
    before = business_rows(shop)
    if "timestamp_offset" in changes:  # relative to now, not to when the module was imported
        changes = {"timestamp": int(time.time()) + changes["timestamp_offset"]}
    body, headers = build(order, **changes)
    response = await post(shop, body, headers, path)
    assert response.status_code == status
    assert response.json()["code"] == "FAIL"
    assert business_rows(shop) == before
    assert shop.count("notifications_received") == 1  # kept raw, with its outcome


async def test_tampered_body_is_refused(shop: Shop, build: Build) -> None:
    order = await shop.create_order(1999)
    before = business_rows(shop)
    body, headers = build(order)
    tampered = body.replace(b'"summary"', b'"summarY"')
    response = await post(shop, tampered, headers)
    assert response.status_code == 401
    assert business_rows(shop) == before


@pytest.mark.parametrize(
    ("content_type", "size", "status"),
    [("text/xml", 10, 415), ("application/x-www-form-urlencoded", 10, 415),
     ("application/json", 70_000, 413)],
)  # fmt: skip
async def test_wrong_type_or_oversized_is_refused_before_verification(
    shop: Shop, build: Build, content_type: str, size: int, status: int
) -> None:
    order = await shop.create_order(1999)
    before = business_rows(shop)
    body, headers = build(order, body=b"{" + b" " * size + b"}")
    response = await post(shop, body, {**headers, "Content-Type": content_type})
    assert response.status_code == status
    assert business_rows(shop) == before


async def test_missing_signature_headers(shop: Shop, build: Build) -> None:
    order = await shop.create_order(1999)
    before = business_rows(shop)
    body, _ = build(order)
    response = await post(shop, body, {"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert business_rows(shop) == before


async def test_amount_mismatch_is_an_alert_not_a_payment(shop: Shop, build: Build) -> None:
    order = await shop.create_order(1999)
    body, headers = build(order, amount=1)
    response = await post(shop, body, headers)
    assert response.status_code == 422
    assert (await shop.http.get(f"/api/orders/{order['id']}")).json()["status"] == "pending"
    assert [a.data["reason"] for a in shop.context.store.alerts_sync()] == ["amount_mismatch"]


async def test_secrets_never_reach_the_log(
    shop: Shop, build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    order = await shop.create_order(1999)
    body, headers = build(order, api_v3_key=Secret("w" * 32))
    with caplog.at_level("DEBUG"):
        await post(shop, body, headers)
    assert [getattr(r, "outcome", None) for r in caplog.records if r.msg == "notify refused"] == [
        "decryption_failed"
    ]
    key = shop.sim.credentials.api_v3_key.reveal()
    assert key not in caplog.text
    assert headers["Wechatpay-Signature"] not in caplog.text


V2_REFUND_CASES: list[tuple[str, bytes, str, int]] = [
    ("not xml", b"hello", "text/xml", 400),
    ("entity", b'<!DOCTYPE x [<!ENTITY a "b">]><xml><a>&a;</a></xml>', "text/xml", 400),
    ("json", b"{}", "application/json", 415),
    ("foreign merchant", b"<xml><return_code>SUCCESS</return_code><appid>wx1</appid>"
     b"<mch_id>1</mch_id><req_info>AAAA</req_info></xml>", "text/xml", 400),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [c[1:] for c in V2_REFUND_CASES],
    ids=[c[0] for c in V2_REFUND_CASES],
)
async def test_hostile_v2_refund_notification_changes_nothing(
    shop: Shop, body: bytes, content_type: str, status: int
) -> None:
    await shop.create_order(1999)
    before = business_rows(shop)
    response = await shop.http.post(
        "/notify/v2/refund", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    assert b"SUCCESS" not in response.content
    assert business_rows(shop) == before


async def test_v2_refund_with_wrong_key_is_refused(shop: Shop) -> None:
    await shop.create_order(1999)
    before = business_rows(shop)
    creds = shop.sim.credentials
    garbage = "A" * 64  # base64 of bytes that do not decrypt under our key
    body = (
        f"<xml><return_code>SUCCESS</return_code><appid>{creds.appid}</appid>"
        f"<mch_id>{creds.mchid}</mch_id><nonce_str>x</nonce_str>"
        f"<req_info>{garbage}</req_info></xml>"
    ).encode()
    response = await shop.http.post(
        "/notify/v2/refund", content=body, headers={"Content-Type": "text/xml"}
    )
    assert response.status_code in (400, 401)
    assert business_rows(shop) == before


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=2048) | st.text(max_size=512).map(str.encode),
    serial=st.sampled_from(["", "PUB_KEY_ID_1", "ABC", "PUB_KEY_ID_" + "9" * 30]),
    signature=st.text(alphabet="ABCDEFabcdef0123456789+/=", max_size=400),
    timestamp=st.integers(min_value=-(2**40), max_value=2**40).map(str) | st.text(max_size=12),
)
async def test_fuzzed_v3_notifications_never_pay_and_never_crash(
    shop: Shop, body: bytes, serial: str, signature: str, timestamp: str
) -> None:
    before = business_rows(shop)
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": signature,
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": "n",
    }
    headers = {k: v for k, v in headers.items() if v.isascii() and v.isprintable()}
    response = await post(shop, body, headers)
    assert 400 <= response.status_code < 500
    assert business_rows(shop) == before
