"""Refunds that WeChat Pay closes or marks abnormal, chosen by the tester at the simulator
(issue 15): scanpay records the state, raises an alert on the order and shows the status in
the shop API, for API v2 (REFUNDCLOSE / CHANGE in ``req_info``) and v3 (REFUND.CLOSED /
REFUND.ABNORMAL events); a closed refund frees its amount, an abnormal one holds it until it
is resolved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scanpay.simulator import PayOutcome
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from tests.web.conftest import SettingsFactory, Shop
from tests.web.v3kit import open_shop


@pytest.fixture(params=["v2", "v3-public-key"])
async def shop(
    request: pytest.FixtureRequest,
    make_settings: SettingsFactory,
    tmp_path: Path,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
) -> AsyncIterator[Shop]:
    async for opened in open_shop(make_settings, tmp_path, credentials, str(request.param)):
        yield opened


async def sim_control(shop: Shop, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=shop.sim.app), base_url="http://sim.test"
    ) as http:
        return await http.post(path, json=body)


async def refund(shop: Shop, order_id: str, amount: int, key: str) -> dict[str, Any]:
    response = await shop.http.post(
        f"/api/orders/{order_id}/refunds", json={"amount": amount},
        headers={**shop.auth, "Idempotency-Key": key},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def refund_statuses(shop: Shop, order_id: str) -> dict[str, str]:
    listed = (await shop.http.get(f"/api/orders/{order_id}/refunds", headers=shop.auth)).json()
    return {r["out_refund_no"]: r["status"] for r in listed["items"]}


def alerts(shop: Shop, order_id: str) -> list[dict[str, Any]]:
    return [dict(e.data) for e in shop.context.store.alerts_sync() if e.order_id == order_id]


async def paid_order(shop: Shop, amount: int) -> dict[str, Any]:
    order = await shop.create_order(amount)
    await shop.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
    await shop.sim.deliver_due_notifications()
    return order


async def test_closed_and_abnormal_refunds(shop: Shop) -> None:
    v3 = shop.settings.api_version == "v3"
    order = await paid_order(shop, 1000)
    # the tester makes refunds that come due close
    chosen = await sim_control(shop, "/sim/refunds/outcome", {"outcome": "REFUNDCLOSE"})
    assert chosen.json()["outcome"] == "closed"
    first = await refund(shop, order["id"], 600, "r-closed")
    shop.sim.clock.advance(1)
    await shop.sim.deliver_due_notifications()
    log = shop.sim.notification_log()
    sent = log[-1]
    assert sent["kind"] == ("refund_v3" if v3 else "refund_v2")
    assert sent["attempts"][-1]["acknowledged"] is True
    if v3:
        assert '"event_type":"REFUND.CLOSED"' in sent["body"]
    assert (await refund_statuses(shop, order["id"]))[first["out_refund_no"]] == "closed"
    closed_alerts = alerts(shop, order["id"])
    assert [a["reason"] for a in closed_alerts] == ["refund_closed"]
    assert closed_alerts[0]["out_refund_no"] == first["out_refund_no"]
    view = (await shop.http.get(f"/api/orders/{order['id']}")).json()
    assert view["status"] == "paid"
    assert view["refunded_amount"] == 0
    # the closed amount is refundable again; this one goes abnormal, chosen per refund
    await sim_control(shop, "/sim/refunds/outcome", {"outcome": "success"})
    second = await refund(shop, order["id"], 1000, "r-abnormal")
    settled = await sim_control(
        shop, f"/sim/refunds/{second['out_refund_no']}/settle", {"outcome": "abnormal"}
    )
    assert settled.status_code == 200, settled.text
    assert settled.json()["refund"]["v2_refund_status"] == "CHANGE"
    statuses = await refund_statuses(shop, order["id"])
    assert statuses[second["out_refund_no"]] == "abnormal"
    assert [a["reason"] for a in alerts(shop, order["id"])] == ["refund_closed", "refund_abnormal"]
    # an abnormal refund holds its amount: nothing more can be refunded
    held = await shop.http.post(
        f"/api/orders/{order['id']}/refunds", json={"amount": 1},
        headers={**shop.auth, "Idempotency-Key": "r-more"},
    )  # fmt: skip
    assert held.status_code == 422
    # a person resolves it at WeChat: it succeeds after all, and the order is refunded
    resolved = await sim_control(
        shop, f"/sim/refunds/{second['out_refund_no']}/settle", {"outcome": "success"}
    )
    assert resolved.status_code == 200
    assert (await refund_statuses(shop, order["id"]))[second["out_refund_no"]] == "success"
    done = (await shop.http.get(f"/api/orders/{order['id']}")).json()
    assert done["status"] == "refunded"
    assert done["refunded_amount"] == 1000
    # a finished refund cannot be settled again; bad input changes nothing
    again = await sim_control(
        shop, f"/sim/refunds/{second['out_refund_no']}/settle", {"outcome": "closed"}
    )
    assert again.status_code == 409
    unknown = await sim_control(shop, "/sim/refunds/nope/settle", {"outcome": "closed"})
    assert unknown.status_code == 404
    assert (
        await sim_control(shop, "/sim/refunds/outcome", {"outcome": "maybe"})
    ).status_code == 400
    assert shop.sim.refunds.outcome.value == "SUCCESS"
