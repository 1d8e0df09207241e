"""Lifecycle through the simulator on a test clock and with the simulator's notification
faults: expiry and replacement, close answering "already paid", double payment refunded,
early queries from the checkout page, the backoff, and two workers never on one attempt at
once (SQLite and PostgreSQL). The 200-orders and identical-notifications runs are in
test_faults.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from scanpay.domain.model import AttemptStatus, EventType
from scanpay.errors import InvalidTransitionError
from tests.web.conftest import SettingsFactory
from tests.web.lifecycle_kit import Rig, database_url_fixture, rig, set_faults  # noqa: F401

WINDOW = 15 * 60


async def test_expired_qr_is_closed_then_replaced(make_settings: SettingsFactory) -> None:
    async with rig(make_settings) as r:
        order = await r.create_order()
        old_code = order["code_url"]
        r.clock.advance(WINDOW + 1)
        page = await r.http.get(f"/checkout/{order['id']}")
        assert page.status_code == 200
        fresh = await r.order(order["id"])
        assert fresh["status"] == "pending"
        assert fresh["out_trade_no"] != order["out_trade_no"]
        assert fresh["code_url"] != old_code
        # closed at WeChat before the new one was made
        assert r.wire.calls[("/pay/closeorder", order["out_trade_no"])] == 1
        with pytest.raises(InvalidTransitionError) as refused:
            await r.sim.pay(code_url=old_code)
        assert refused.value.code == "ORDER_CLOSED"
        await r.sim.pay(code_url=fresh["code_url"])
        await r.sim.deliver_due_notifications()
        assert (await r.order(order["id"]))["status"] == "paid"
        assert r.events(order["id"]).count("paid") == 1


async def test_close_answering_paid_makes_the_order_paid(make_settings: SettingsFactory) -> None:
    async with rig(make_settings) as r:
        set_faults(r.sim, "drop_notifications=1")  # every notification is lost
        order = await r.create_order()
        await r.sim.pay(code_url=order["code_url"])
        await r.sim.deliver_due_notifications()
        r.clock.advance(WINDOW + 1)
        await r.http.get(f"/checkout/{order['id']}")
        fresh = await r.order(order["id"])
        assert fresh["status"] == "paid"
        assert fresh["out_trade_no"] == order["out_trade_no"]  # no new attempt was made
        assert len(r.context.store.attempts_sync(order["id"])) == 1


async def test_unpaid_order_expires_after_its_attempt_is_closed(
    make_settings: SettingsFactory,
) -> None:
    async with rig(make_settings, order_deadline_seconds=WINDOW) as r:
        order = await r.create_order()
        r.clock.advance(WINDOW + 1)
        await r.runtime.reconciler.drain()
        assert (await r.order(order["id"]))["status"] == "expired"
        sim_order = r.sim.ledger.order(order["out_trade_no"])
        assert sim_order is not None
        assert sim_order.trade_state.value == "CLOSED"
        assert r.events(order["id"])[-2:] == ["attempt_closed", "expired"]


async def test_both_attempts_paid_keeps_one_refunds_the_other(
    make_settings: SettingsFactory,
) -> None:
    async with rig(make_settings) as r:
        # every notification is held back 60 s, then sent 3 times at once, in random order
        set_faults(
            r.sim,
            "delay_notifications=60,duplicate_notifications=3,reorder_notifications",
            seed=3,
        )
        order = await r.create_order()
        r.clock.advance(WINDOW - 5)
        await r.sim.pay(code_url=order["code_url"])  # paid just in time; notice delayed
        await r.sim.deliver_due_notifications()
        assert r.events(order["id"]).count("paid") == 0
        r.clock.advance(10)
        r.wire.lying_close = True  # the close "succeeds" although the order was paid
        await r.http.get(f"/checkout/{order['id']}")
        r.wire.lying_close = False
        fresh = await r.order(order["id"])
        assert fresh["out_trade_no"] != order["out_trade_no"]
        await r.sim.pay(code_url=fresh["code_url"])
        await r.sim.deliver_due_notifications()  # held back too
        r.clock.advance(60)
        await r.sim.deliver_due_notifications()  # both payments, 3 copies each, at once
        log = r.sim.notification_log()
        assert [n["status"] for n in log] == ["delivered", "delivered"]
        assert r.rows("SELECT count(*) FROM notifications_received")[0][0] == 6
        assert (await r.order(order["id"]))["status"] == "paid"
        events = r.context.store.events_after_sync(order["id"], 0)
        assert [e.type for e in events].count(EventType.PAID) == 1
        alerts = [e for e in events if e.type is EventType.ALERT]
        assert [a.data["reason"] for a in alerts] == ["second_payment"]
        statuses = Counter(a.status for a in r.context.store.attempts_sync(order["id"]))
        assert statuses == Counter({AttemptStatus.PAID: 1, AttemptStatus.SURPLUS: 1})
        surplus = alerts[0].data["out_trade_no"]
        refunds = r.rows(f"SELECT out_trade_no, amount FROM refunds WHERE order_id='{order['id']}'")
        assert [(row[0], row[1]) for row in refunds] == [(surplus, 1999)]


async def test_checkout_page_asks_for_an_early_query_rate_limited(
    make_settings: SettingsFactory,
) -> None:
    async with rig(make_settings) as r:
        set_faults(r.sim, "drop_notifications=1")
        order = await r.create_order()
        await r.sim.pay(code_url=order["code_url"])
        await r.sim.deliver_due_notifications()
        r.clock.advance(1)
        await r.http.get(f"/checkout/{order['id']}")
        await r.runtime.reconciler.drain()
        assert (await r.order(order["id"]))["status"] == "paid"
        assert r.wire.count("/pay/orderquery") == 1

        other = await r.create_order()
        for _ in range(5):  # within the quiet period: one query in all
            await r.http.get(f"/checkout/{other['id']}")
            await r.runtime.reconciler.drain()
        assert r.wire.calls[("/pay/orderquery", other["out_trade_no"])] == 1
        r.clock.advance(6)
        await r.http.get(f"/checkout/{other['id']}")
        await r.runtime.reconciler.drain()
        assert r.wire.calls[("/pay/orderquery", other["out_trade_no"])] == 2


async def test_backoff_schedule_then_close_at_expiry(make_settings: SettingsFactory) -> None:
    async with rig(make_settings) as r:
        order = await r.create_order()
        seen: list[int] = []
        for _ in range(WINDOW // 10 + 2):
            r.clock.advance(10)
            await r.runtime.reconciler.drain()
            seen.append(r.wire.calls[("/pay/orderquery", order["out_trade_no"])])
        # queried after 10, 30, 70, 150, 310, 610 s (10 s doubling, capped at 300 s), 900 s
        assert seen[0] == 1
        assert seen[2] == 2
        assert seen[6] == 3
        assert r.wire.calls[("/pay/closeorder", order["out_trade_no"])] == 1
        attempt = r.context.store.attempts_sync(order["id"])[0]
        assert attempt.status is AttemptStatus.CLOSED
        assert (await r.order(order["id"]))["status"] == "pending"  # deadline not reached


async def test_two_workers_never_query_one_attempt_at_once(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """Two reconcilers on one database, each pass started at the same moment: every due
    attempt is queried exactly once per pass (by one of them), never by both, never twice.

    Each worker leases at most 15 attempts per pass and 30 are due, so each one gets 15
    whichever claims first: the split does not depend on thread timing."""
    async with (
        rig(make_settings, database_url=database_url, reconciler_batch=15) as one,
        rig(make_settings, sim=one.sim, database_url=database_url, reconciler_batch=15) as two,
    ):
        two.wire.in_flight = one.wire.in_flight  # one view of calls in flight
        orders = [await one.create_order() for _ in range(30)]
        numbers = {order["out_trade_no"] for order in orders}
        before: Counter[str] = Counter()
        for _ in range(3):
            one.clock.advance(timedelta(minutes=1).total_seconds())
            passes = await asyncio.gather(
                one.runtime.reconciler.run_once(), two.runtime.reconciler.run_once()
            )
            assert [p.claimed for p in passes] == [15, 15]
            queries = _queries(one) + _queries(two)
            assert queries - before == Counter(numbers)  # exactly one query each, this pass
            before = queries
        assert one.wire.overlaps + two.wire.overlaps == 0


def _queries(r: Rig) -> Counter[str]:
    return Counter({otn: n for (path, otn), n in r.wire.calls.items() if path == "/pay/orderquery"})
