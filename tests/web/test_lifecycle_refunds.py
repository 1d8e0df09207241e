"""The reconciler looks after refunds not settled yet, through the simulator on its test
clock: a refund whose notification the simulator drops ends SUCCESS by query; a refund whose
submission met a WeChat system error (left ``submitting``) is resubmitted, same number."""

from __future__ import annotations

from typing import Any

from scanpay.wechat.v2.refunds import REFUND_PATH, REFUND_QUERY_PATH
from tests.web.conftest import SHOP_KEY, SettingsFactory
from tests.web.lifecycle_kit import Rig, database_url_fixture, rig, set_faults  # noqa: F401

AMOUNT = 1999


async def paid_order(r: Rig) -> dict[str, Any]:
    order = await r.create_order(AMOUNT)
    await r.sim.pay(code_url=order["code_url"])
    await r.sim.deliver_due_notifications()
    assert (await r.order(order["id"]))["status"] == "paid"
    return order


async def ask_refund(r: Rig, order_id: str, key: str) -> tuple[int, dict[str, Any]]:
    response = await r.http.post(
        f"/api/orders/{order_id}/refunds",
        json={"amount": AMOUNT, "reason": "returned"},
        headers={"Authorization": f"Bearer {SHOP_KEY}", "Idempotency-Key": key},
    )
    body: dict[str, Any] = response.json()
    return response.status_code, body


def refund_rows(r: Rig, order_id: str) -> list[tuple[str, int]]:
    rows = r.rows(f"SELECT status, query_count FROM refunds WHERE order_id='{order_id}'")
    return [(row[0], row[1]) for row in rows]


async def test_refund_with_dropped_notification_ends_success_by_query(
    make_settings: SettingsFactory, database_url: str
) -> None:
    async with rig(make_settings, database_url=database_url) as r:
        order = await paid_order(r)
        set_faults(r.sim, "drop_notifications=1")
        status, refund = await ask_refund(r, order["id"], "refund-1")
        assert status == 201
        assert refund["status"] == "processing"
        r.clock.advance(r.sim.refunds.settle_after + 1)
        await r.sim.deliver_due_notifications()  # settled at WeChat; the notice is lost
        assert [n["status"] for n in r.sim.notification_log()] == ["delivered", "dropped"]
        assert (await r.order(order["id"]))["status"] == "paid"
        await r.runtime.reconciler.drain()  # not due yet: no query before the first delay
        assert r.wire.count(REFUND_QUERY_PATH) == 0
        r.clock.advance(10)
        await r.runtime.reconciler.drain()
        assert r.wire.count(REFUND_QUERY_PATH) == 1
        fresh = await r.order(order["id"])
        assert fresh["status"] == "refunded"
        assert fresh["refunded_amount"] == AMOUNT
        assert refund_rows(r, order["id"]) == [("success", 1)]
        assert r.events(order["id"]).count("refunded") == 1
        r.clock.advance(3600)  # settled: never asked about again
        await r.runtime.reconciler.drain()
        assert r.wire.count(REFUND_QUERY_PATH) == 1


async def test_refund_left_submitting_is_resubmitted_with_its_number(
    make_settings: SettingsFactory,
) -> None:
    async with rig(make_settings) as r:
        order = await paid_order(r)
        set_faults(r.sim, "system_error=1:1@api")  # the next WeChat call fails, once
        status, body = await ask_refund(r, order["id"], "refund-2")
        assert status == 502, body  # WeChat answered: SYSTEMERROR, "call again"
        assert body["error"]["code"] == "SYSTEMERROR"
        assert refund_rows(r, order["id"]) == [("submitting", 0)]
        r.clock.advance(10)
        await r.runtime.reconciler.drain()
        assert r.wire.count(REFUND_PATH) == 2
        assert refund_rows(r, order["id"]) == [("processing", 1)]
        r.clock.advance(r.sim.refunds.settle_after + 1)
        await r.sim.deliver_due_notifications()
        fresh = await r.order(order["id"])
        assert fresh["status"] == "refunded"
        [refund] = (
            await r.http.get(
                f"/api/orders/{order['id']}/refunds",
                headers={"Authorization": f"Bearer {SHOP_KEY}"},
            )
        ).json()["items"]
        assert refund["status"] == "success"
        numbers = {row[0] for row in r.rows("SELECT out_refund_no FROM refunds")}
        assert len(numbers) == 1
