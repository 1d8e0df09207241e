"""The shop API: authentication, idempotency keys, validation, errors as JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.web.conftest import Shop


async def test_create_order_returns_everything_the_shop_needs(shop: Shop) -> None:
    order = await shop.create_order(1999, "Green tea")
    assert order["id"].startswith("ord_")
    assert order["status"] == "pending"
    assert order["amount"] == 1999
    assert order["currency"] == "CNY"
    assert order["description"] == "Green tea"
    assert 6 <= len(order["out_trade_no"]) <= 32
    assert order["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert order["checkout_url"] == f"http://shop.test/checkout/{order['id']}"
    read = await shop.http.get(f"/api/orders/{order['id']}")
    assert read.status_code == 200
    assert read.json() == order


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic abc"}],
)
async def test_create_needs_the_shop_key(shop: Shop, headers: dict[str, str]) -> None:
    response = await shop.http.post(
        "/api/orders", json={"amount": 1, "description": "x"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert shop.count("orders") == 0


async def test_idempotency_key_same_body_same_order(shop: Shop) -> None:
    headers = {**shop.auth, "Idempotency-Key": "order-42"}
    body = {"amount": 500, "description": "Tea"}
    first = await shop.http.post("/api/orders", json=body, headers=headers)
    second = await shop.http.post("/api/orders", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    other = await shop.http.post(
        "/api/orders", json={"amount": 501, "description": "Tea"}, headers=headers
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert shop.count("orders") == 1


async def test_concurrent_requests_with_one_key_make_one_order(shop: Shop) -> None:
    headers = {**shop.auth, "Idempotency-Key": "race"}
    body = {"amount": 700, "description": "Tea"}
    responses = await asyncio.gather(
        *(shop.http.post("/api/orders", json=body, headers=headers) for _ in range(6))
    )
    assert {r.status_code for r in responses} <= {200, 201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert shop.count("orders") == 1


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0, "description": "x"},
        {"amount": -1, "description": "x"},
        {"amount": 1.5, "description": "x"},
        {"amount": 100.0, "description": "x"},
        {"amount": True, "description": "x"},
        {"amount": "100", "description": "x"},
        {"amount": 2**31, "description": "x"},
        {"amount": 10**30, "description": "x"},
        {"amount": None, "description": "x"},
        {"amount": 1, "description": ""},
        {"amount": 1, "description": "x" * 128},
        {"amount": 1, "description": 5},
        {"amount": 1, "description": "x", "currency": "USD"},
        {"description": "x"},
        {"amount": 1},
        [1, 2],
        "text",
        None,
    ],
)
async def test_invalid_bodies_get_a_clear_4xx(shop: Shop, body: Any) -> None:
    response = await shop.http.post("/api/orders", json=body, headers=shop.auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "INVALID_REQUEST"
    assert shop.count("orders") == 0


@pytest.mark.parametrize(
    "content",
    [b"{", b"\xff\xfe", b'{"amount": 1, "description": "x", "amount": 2}x', b"NaN"],
)
async def test_malformed_json_gets_a_clear_4xx(shop: Shop, content: bytes) -> None:
    response = await shop.http.post(
        "/api/orders",
        content=content,
        headers={**shop.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "INVALID_REQUEST"


async def test_control_characters_in_description_are_refused(shop: Shop) -> None:
    response = await shop.http.post(
        "/api/orders", json={"amount": 1, "description": "a\u0000b"}, headers=shop.auth
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "INVALID_DESCRIPTION"


async def test_bad_idempotency_key_is_refused(shop: Shop) -> None:
    response = await shop.http.post(
        "/api/orders",
        json={"amount": 1, "description": "x"},
        headers={**shop.auth, "Idempotency-Key": "x" * 256},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "INVALID_IDEMPOTENCY_KEY"


async def test_oversized_body_is_refused_before_parsing(shop: Shop) -> None:
    body = b'{"amount": 1, "description": "' + b"x" * 20_000 + b'"}'
    response = await shop.http.post(
        "/api/orders", content=body, headers={**shop.auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "BODY_TOO_LARGE"


@pytest.mark.parametrize("order_id", ["ord_" + "A" * 22, "nope", "ord_../../etc", "1" * 500])
async def test_unknown_orders_are_404(shop: Shop, order_id: str) -> None:
    for path in (f"/api/orders/{order_id}", f"/api/orders/{order_id}/events"):
        response = await shop.http.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_health_and_openapi(shop: Shop) -> None:
    assert (await shop.http.get("/healthz")).json() == {"status": "ok"}
    spec = (await shop.http.get("/openapi.json")).json()
    assert {"/api/orders", "/api/orders/{order_id}", "/notify/v2"} <= set(spec["paths"])
    assert "/checkout/{order_id}" not in spec["paths"]
    assert (await shop.http.get("/docs")).status_code == 200
    missing = await shop.http.get("/no/such/path")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"


async def test_wechat_unreachable_is_a_503_and_the_order_is_kept(
    make_settings: Any,
) -> None:
    import httpx

    from scanpay.web.app import create_app

    app = create_app(make_settings(wechat_base_url="http://127.0.0.1:9"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shop.test"
    ) as http:
        response = await http.post(
            "/api/orders",
            json={"amount": 1, "description": "x"},
            headers={"Authorization": "Bearer shop-key-for-tests-0123456789"},
        )
    await app.state.scanpay.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "NOT_SENT"
