"""Shop API beyond create/read: list (paginated, filtered), close (at WeChat first), refund
validation; every invalid request is a 4xx with a machine-readable code."""

from __future__ import annotations

from typing import Any

import pytest

from scanpay.errors import ScanpayError
from scanpay.simulator import PayOutcome
from tests.web.conftest import Shop


async def test_list_is_newest_first_paginated_and_filtered(shop: Shop) -> None:
    made = [await shop.create_order(100 + i, f"Tea {i}") for i in range(5)]
    await shop.sim.pay(code_url=made[1]["code_url"], outcome=PayOutcome.SUCCESS)
    await shop.sim.deliver_due_notifications()
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await shop.http.get("/api/orders", params=params, headers=shop.auth)).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [o["id"] for o in reversed(made)]
    paid = await shop.http.get("/api/orders", params={"status": "paid"}, headers=shop.auth)
    assert [o["id"] for o in paid.json()["items"]] == [made[1]["id"]]


@pytest.mark.parametrize(
    ("params", "code"),
    [({"limit": 0}, "INVALID_REQUEST"), ({"limit": 101}, "INVALID_REQUEST"),
     ({"status": "nope"}, "INVALID_REQUEST"), ({"cursor": "!!!"}, "INVALID_CURSOR"),
     ({"cursor": "bm90IGEgY3Vyc29y"}, "INVALID_CURSOR")],
)  # fmt: skip
async def test_list_rejects_bad_parameters(shop: Shop, params: dict[str, Any], code: str) -> None:
    response = await shop.http.get("/api/orders", params=params, headers=shop.auth)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/orders"), ("POST", "/api/orders/ord_aaaaaaaaaaaaaaaaaaaaaa/close"),
     ("POST", "/api/orders/ord_aaaaaaaaaaaaaaaaaaaaaa/refunds"),
     ("GET", "/api/orders/ord_aaaaaaaaaaaaaaaaaaaaaa/refunds")],
)  # fmt: skip
async def test_shop_routes_need_the_key(shop: Shop, method: str, path: str) -> None:
    response = await shop.http.request(method, path, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_close_closes_at_wechat_then_the_order(shop: Shop) -> None:
    order = await shop.create_order()
    response = await shop.http.post(f"/api/orders/{order['id']}/close", headers=shop.auth)
    assert response.status_code == 200
    assert response.json()["status"] == "closed"
    # the QR can no longer be paid at the simulator
    with pytest.raises(ScanpayError):
        await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
    again = await shop.http.post(f"/api/orders/{order['id']}/close", headers=shop.auth)
    assert again.json()["status"] == "closed"


async def test_closing_an_order_paid_at_wechat_makes_it_paid(shop: Shop) -> None:
    order = await shop.create_order()
    await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)  # not delivered
    response = await shop.http.post(f"/api/orders/{order['id']}/close", headers=shop.auth)
    assert response.json()["status"] == "paid"
    assert shop.event_types(order["id"]).count("paid") == 1
    again = await shop.http.post(f"/api/orders/{order['id']}/close", headers=shop.auth)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "code"),
    [({"amount": 0}, "INVALID_REQUEST"), ({"amount": -5}, "INVALID_REQUEST"),
     ({"amount": 1.5}, "INVALID_REQUEST"), ({"amount": "100"}, "INVALID_REQUEST"),
     ({"amount": 2**31}, "INVALID_REQUEST"), ({"amount": 10**30}, "INVALID_REQUEST"),
     ({"amount": True}, "INVALID_REQUEST"), ({}, "INVALID_REQUEST"),
     ({"amount": 1, "reason": "x" * 81}, "INVALID_REQUEST"),
     ({"amount": 1, "reason": "bell\x07"}, "INVALID_REASON"),
     ({"amount": 1, "extra": 1}, "INVALID_REQUEST")],
)  # fmt: skip
async def test_refund_validation(shop: Shop, body: dict[str, Any], code: str) -> None:
    order = await shop.create_order(500)
    await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
    await shop.sim.deliver_due_notifications()
    response = await shop.http.post(
        f"/api/orders/{order['id']}/refunds",
        json=body,
        headers={**shop.auth, "Idempotency-Key": "k"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert shop.count("refunds") == 0


async def test_refund_needs_a_key_and_a_paid_order(shop: Shop) -> None:
    order = await shop.create_order(500)
    url = f"/api/orders/{order['id']}/refunds"
    no_key = await shop.http.post(url, json={"amount": 1}, headers=shop.auth)
    assert no_key.status_code == 422
    assert no_key.json()["error"]["code"] == "INVALID_IDEMPOTENCY_KEY"
    unpaid = await shop.http.post(
        url, json={"amount": 1}, headers={**shop.auth, "Idempotency-Key": "k"}
    )
    assert unpaid.status_code == 409
    assert unpaid.json()["error"]["code"] == "ORDER_NOT_PAID"
    missing = await shop.http.post(
        "/api/orders/ord_aaaaaaaaaaaaaaaaaaaaaa/refunds",
        json={"amount": 1},
        headers={**shop.auth, "Idempotency-Key": "k2"},
    )
    assert missing.status_code == 404
