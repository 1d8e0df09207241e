"""Hostile input on POST /notify/v2: a failure answer, and no business row changed."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanpay.wechat.states import SignType
from scanpay.wechat.v2.notify import build_payment_notification, is_success_ack
from tests.web.conftest import Shop

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><return_code>&lol3;</return_code></xml>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]><xml><out_trade_no>&ext;</out_trade_no></xml>"""

HOSTILE: list[tuple[str, bytes, str, int]] = [
    ("billion laughs", LAUGHS, "text/xml", 400),
    ("external entity", EXTERNAL, "text/xml", 400),
    ("not xml", b"hello", "text/xml", 400),
    ("empty", b"", "text/xml", 400),
    ("truncated", b"<xml><return_code>SUCCESS</return_code>", "text/xml", 400),
    ("nested", b"<xml><a><b>1</b></a></xml>", "text/xml", 400),
    ("duplicate field", b"<xml><a>1</a><a>2</a></xml>", "text/xml", 400),
    ("wrong root", b"<root><return_code>SUCCESS</return_code></root>", "text/xml", 400),
    ("not utf-8", b"<xml><a>\xff\xfe</a></xml>", "text/xml", 400),
    ("unsigned success", b"<xml><return_code>SUCCESS</return_code></xml>", "text/xml", 401),
    ("json", b'{"return_code": "SUCCESS"}', "application/json", 415),
    ("form", b"return_code=SUCCESS", "application/x-www-form-urlencoded", 415),
    ("oversized", b"<xml><a>" + b"x" * 70_000 + b"</a></xml>", "text/xml", 413),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
async def test_hostile_notification_changes_nothing(
    shop: Shop, body: bytes, content_type: str, status: int
) -> None:
    order = await shop.create_order()
    before = shop.snapshot()
    response = await shop.http.post(
        "/notify/v2", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status
    assert not is_success_ack(response.content)
    assert shop.snapshot() == before
    assert (await shop.http.get(f"/api/orders/{order['id']}")).json()["status"] == "pending"


async def test_tampered_body_after_signing_is_refused(shop: Shop) -> None:
    order = await shop.create_order(1999)
    key = shop.sim.credentials.api_v2_key
    body = build_payment_notification(
        {
            "appid": shop.settings.appid,
            "mch_id": shop.settings.mchid,
            "nonce_str": "abc",
            "total_fee": 1,
            "fee_type": "CNY",
            "transaction_id": "4200000000000000000000000001",
            "out_trade_no": order["out_trade_no"],
            "time_end": "20260101120000",
        },
        key,
        SignType.MD5,
    )
    tampered = body.replace(b"<total_fee>1</total_fee>", b"<total_fee>1999</total_fee>")
    assert tampered != body
    before = shop.snapshot()
    response = await shop.http.post("/notify/v2", content=tampered)
    assert response.status_code == 401
    assert shop.snapshot() == before


async def test_unknown_order_is_refused_and_never_paid(shop: Shop) -> None:
    key = shop.sim.credentials.api_v2_key
    body = build_payment_notification(
        {
            "appid": shop.settings.appid,
            "mch_id": shop.settings.mchid,
            "nonce_str": "abc",
            "total_fee": 1,
            "transaction_id": "4200000000000000000000000002",
            "out_trade_no": "sp000000000000nosuchorder1",
            "time_end": "20260101120000",
        },
        key,
        SignType.HMAC_SHA256,
    )
    response = await shop.http.post("/notify/v2", content=body)
    assert response.status_code == 422
    assert not is_success_ack(response.content)
    assert [a.data["reason"] for a in shop.context.store.alerts_sync()] == ["unknown_out_trade_no"]


async def test_another_merchant_is_refused(shop: Shop) -> None:
    order = await shop.create_order(1999)
    key = shop.sim.credentials.api_v2_key
    body = build_payment_notification(
        {
            "appid": shop.settings.appid,
            "mch_id": "1234567890",
            "nonce_str": "abc",
            "total_fee": 1999,
            "transaction_id": "4200000000000000000000000003",
            "out_trade_no": order["out_trade_no"],
            "time_end": "20260101120000",
        },
        key,
        SignType.HMAC_SHA256,
    )
    response = await shop.http.post("/notify/v2", content=body)
    assert response.status_code == 422
    assert (await shop.http.get(f"/api/orders/{order['id']}")).json()["status"] == "pending"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=2048) | st.text(max_size=512).map(str.encode))
async def test_fuzzed_bodies_never_pay_and_never_crash(shop: Shop, body: bytes) -> None:
    before = shop.snapshot()
    response = await shop.http.post(
        "/notify/v2", content=body, headers={"Content-Type": "text/xml"}
    )
    assert 400 <= response.status_code < 500
    assert not is_success_ack(response.content)
    assert shop.snapshot() == before
