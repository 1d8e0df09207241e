"""Issue 5's must-show runs, driven by the simulator's own faults and test clock.

- 200 orders paid while the simulator drops 30% of notifications and delivers the rest three
  times in random order (its ``flaky_notifications`` scenario): all end paid, one "paid"
  event each, the dropped ones found by the reconciler's first scheduled query.
- 50 identical notifications at once: one transition, one event (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio

from scanpay.simulator.faults import MAX_COPIES, parse_header
from scanpay.wechat.v2.notify import is_success_ack
from tests.web.conftest import SettingsFactory
from tests.web.lifecycle_kit import database_url_fixture, rig, set_faults  # noqa: F401

ORDERS = 200
IDENTICAL = 50


async def test_200_orders_paid_through_flaky_notifications(make_settings: SettingsFactory) -> None:
    async with rig(make_settings) as r:
        set_faults(r.sim, "scenario=flaky_notifications", seed=20250301)
        orders = [await r.create_order(amount=100 + i) for i in range(ORDERS)]
        for order in orders:
            await r.sim.pay(code_url=order["code_url"])
        await r.sim.deliver_due_notifications()  # one round: every copy, shuffled, at once
        log = r.sim.notification_log()
        assert len(log) == ORDERS
        dropped = {n["out_trade_no"] for n in log if n["status"] == "dropped"}
        assert 30 < len(dropped) < 100
        assert all(n["status"] == "delivered" for n in log if n["out_trade_no"] not in dropped)
        received = r.rows("SELECT count(*) FROM notifications_received")[0][0]
        assert received == 3 * (ORDERS - len(dropped))
        unpaid = [o for o in orders if (await r.order(o["id"]))["status"] != "paid"]
        assert {o["out_trade_no"] for o in unpaid} == dropped
        # a dropped notification is never retried: the first scheduled query (10 s) finds it
        r.clock.advance(10)
        await r.runtime.reconciler.drain()
        for order in orders:
            assert (await r.order(order["id"]))["status"] == "paid", order["id"]
            assert r.events(order["id"]).count("paid") == 1
        assert r.context.store.alerts_sync() == []
        queried = {otn for (path, otn) in r.wire.calls if path == "/pay/orderquery"}
        assert queried == dropped
        assert r.wire.count("/pay/orderquery") == len(dropped)


async def test_identical_notifications_at_once_one_transition(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """The simulator's ``duplicate_notifications`` fault delivers 50 copies of the notification
    at once (should MAX_COPIES ever be lower, the test posts the rest of the 50 — the same
    signed body, from the simulator's log — in the same moment)."""
    async with rig(make_settings, database_url=database_url) as r:
        order = await r.create_order()
        copies = min(MAX_COPIES, IDENTICAL)
        r.sim.faults.for_order(
            order["out_trade_no"], parse_header(f"duplicate_notifications={copies}")
        )
        await r.sim.pay(code_url=order["code_url"])
        [note] = r.sim.notification_log()
        body = note["body"].encode()

        async def post() -> tuple[int, bytes]:
            answer = await r.http.post(
                "/notify/v2", content=body, headers={"Content-Type": "text/xml"}
            )
            return answer.status_code, answer.content

        simulator_round = asyncio.ensure_future(r.sim.deliver_due_notifications())
        answers = await asyncio.gather(*(post() for _ in range(IDENTICAL - copies)))
        await simulator_round
        assert all(status == 200 and is_success_ack(content) for status, content in answers)
        [note] = r.sim.notification_log()
        assert note["status"] == "delivered"
        assert r.rows("SELECT count(*) FROM notifications_received")[0][0] == IDENTICAL
        assert r.rows("SELECT count(DISTINCT body) FROM notifications_received")[0][0] == 1
        assert (await r.order(order["id"]))["status"] == "paid"
        assert r.events(order["id"]).count("paid") == 1
        assert r.context.store.alerts_sync() == []
