"""``return_url`` on order creation: optional, http/https only, capped, stored and returned;
anything else is a 422 with the machine-readable code ``INVALID_RETURN_URL``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import Shop


async def post(
    shop: Shop, body: dict[str, object], key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = dict(shop.auth)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await shop.http.post("/api/orders", json=body, headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/orders/42?ref=wx#done",
        "http://127.0.0.1:8080/",
        "HTTPS://SHOP.EXAMPLE",
        "https://[::1]:8443/back",
        "https://shop.example/" + "a" * (2048 - len("https://shop.example/")),
    ],
)
async def test_return_url_is_stored_and_returned(shop: Shop, url: str) -> None:
    status, order = await post(shop, {"amount": 100, "description": "Tea", "return_url": url})
    assert status == 201, order
    assert order["return_url"] == url
    read = (await shop.http.get(f"/api/orders/{order['id']}")).json()
    assert read["return_url"] == url


async def test_return_url_is_optional(shop: Shop) -> None:
    status, order = await post(shop, {"amount": 100, "description": "Tea"})
    assert status == 201
    assert order["return_url"] is None
    status, order = await post(shop, {"amount": 100, "description": "Tea", "return_url": None})
    assert status == 201
    assert order["return_url"] is None


@pytest.mark.parametrize(
    "url",
    [
        "",
        "shop.example/back",
        "//shop.example/back",
        "javascript:alert(1)",
        "data:text/html,<b>hi</b>",
        "ftp://shop.example/",
        "https://",
        "https:///path-only",
        "https://user:secret@shop.example/",
        "https://shop.example@evil.example/",
        "https://shop.example:99999/",
        "https://shop.example:0/",
        "https://shop.example/a b",
        "https://shop.example/\n",
        "https://shop.example/caf\u00e9",
        "https://[::1/",
        "https://shop.example/" + "a" * 2048,
    ],
)
async def test_bad_return_urls_are_refused_with_a_clear_code(shop: Shop, url: str) -> None:
    before = shop.count("orders")
    status, body = await post(shop, {"amount": 100, "description": "Tea", "return_url": url})
    assert status == 422, body
    assert body["error"]["code"] == "INVALID_RETURN_URL"
    assert "return_url" in body["error"]["message"]
    assert shop.count("orders") == before


async def test_a_return_url_that_is_not_a_string_is_an_invalid_request(shop: Shop) -> None:
    for value in (42, ["https://shop.example/"], {"url": "https://shop.example/"}, True):
        status, body = await post(shop, {"amount": 100, "description": "Tea", "return_url": value})
        assert status == 422
        assert body["error"]["code"] == "INVALID_REQUEST"


async def test_idempotency_key_covers_the_return_url(shop: Shop) -> None:
    body = {"amount": 100, "description": "Tea", "return_url": "https://shop.example/1"}
    first_status, first = await post(shop, body, key="order-1")
    replay_status, replay = await post(shop, body, key="order-1")
    assert (first_status, replay_status) == (201, 200)
    assert replay["id"] == first["id"]
    other_status, other = await post(
        shop, {**body, "return_url": "https://shop.example/2"}, "order-1"
    )
    assert other_status == 409
    assert other["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # a body without return_url keeps the fingerprint it always had
    plain = {"amount": 100, "description": "Tea"}
    assert (await post(shop, plain, key="order-2"))[0] == 201
    assert (await post(shop, {**plain, "return_url": None}, key="order-2"))[0] == 200


async def test_openapi_documents_return_url(shop: Shop) -> None:
    schema = (await shop.http.get("/openapi.json")).json()
    create = schema["components"]["schemas"]["CreateOrder"]["properties"]["return_url"]
    assert create["maxLength"] == 2048
    assert {"type": "string"} in create["anyOf"]
