"""Pay and refund through the service and the simulator, for API v2, v3 public-key mode and
v3 certificate mode: the whole flow in one process (QR, payment notification, partial and full
refunds, refund notifications, refunded amount and status on the order)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from scanpay.simulator import PayOutcome
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from tests.web.conftest import SettingsFactory, Shop
from tests.web.v3kit import MODES, open_shop


@pytest.fixture(params=MODES)
async def any_shop(
    request: pytest.FixtureRequest,
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[Shop]:
    async for shop in open_shop(make_settings, tmp_path, credentials, str(request.param)):
        yield shop


async def order_of(shop: Shop, order_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await shop.http.get(f"/api/orders/{order_id}")).json()
    return body


async def refund(shop: Shop, order_id: str, amount: int, key: str) -> dict[str, Any]:
    response = await shop.http.post(
        f"/api/orders/{order_id}/refunds",
        json={"amount": amount, "reason": "customer asked"},
        headers={**shop.auth, "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def settle_refunds(shop: Shop) -> None:
    shop.sim.clock.advance(1)
    await shop.sim.deliver_due_notifications()


async def test_pay_then_refund_in_two_parts(any_shop: Shop) -> None:
    shop = any_shop
    order = await shop.create_order(1000, "Pu-erh")
    attempt = await shop.context.store.current_attempt(order["id"])
    assert attempt.api_version.value == shop.settings.api_version
    await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
    assert await shop.sim.deliver_due_notifications() == 1
    assert (await order_of(shop, order["id"]))["status"] == "paid"

    first = await refund(shop, order["id"], 300, "refund-1")
    assert first["status"] == "processing"
    assert (await order_of(shop, order["id"]))["status"] == "paid"  # not until WeChat says so
    await settle_refunds(shop)
    after_first = await order_of(shop, order["id"])
    assert after_first["status"] == "partially_refunded"
    assert after_first["refunded_amount"] == 300

    await refund(shop, order["id"], 700, "refund-2")
    await settle_refunds(shop)
    done = await order_of(shop, order["id"])
    assert done["status"] == "refunded"
    assert done["refunded_amount"] == 1000
    listed = (await shop.http.get(f"/api/orders/{order['id']}/refunds", headers=shop.auth)).json()
    assert sorted(r["status"] for r in listed["items"]) == ["success", "success"]
    assert shop.event_types(order["id"]).count("paid") == 1
    # each refund's own outcome event precedes the order's (issue 11: refund.succeeded)
    assert shop.event_types(order["id"])[-4:] == [
        "refund_succeeded", "partially_refunded", "refund_succeeded", "refunded"
    ]  # fmt: skip
    # every notification (payment and refunds) was acknowledged
    assert all(n["attempts"][-1]["acknowledged"] for n in shop.sim.notification_log())


async def test_refund_query_settles_without_a_notification(any_shop: Shop) -> None:
    shop = any_shop
    order = await shop.create_order(500)
    await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
    await shop.sim.deliver_due_notifications()
    made = await refund(shop, order["id"], 500, "q-1")
    shop.sim.clock.advance(1)
    shop.sim.refunds.settle()  # WeChat finished the refund; its notification is never delivered
    outcome = await shop.app.state.extras.refunds.reconcile_refund(made["out_refund_no"])
    assert outcome.verdict.value == "applied"
    assert (await order_of(shop, order["id"]))["status"] == "refunded"


async def test_refund_is_idempotent_by_key(any_shop: Shop) -> None:
    shop = any_shop
    order = await shop.create_order(800)
    await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
    await shop.sim.deliver_due_notifications()
    headers = {**shop.auth, "Idempotency-Key": "same-key"}
    url = f"/api/orders/{order['id']}/refunds"
    one = await shop.http.post(url, json={"amount": 100}, headers=headers)
    two = await shop.http.post(url, json={"amount": 100}, headers=headers)
    other = await shop.http.post(url, json={"amount": 101}, headers=headers)
    assert (one.status_code, two.status_code, other.status_code) == (201, 200, 409)
    assert one.json()["id"] == two.json()["id"]
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    too_much = await shop.http.post(
        url, json={"amount": 701}, headers={**shop.auth, "Idempotency-Key": "k2"}
    )
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "REFUND_EXCEEDS_PAYMENT"
