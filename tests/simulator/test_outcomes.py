"""Payer outcomes beyond plain success: "user paying" then success on the simulator clock, paying
a closed or expired order, and resending a notification on demand (API and the /sim page)."""

from __future__ import annotations

import httpx
import pytest

from scanpay.client.v2 import V2Client
from scanpay.errors import InvalidTransitionError
from scanpay.simulator import PayOutcome, SimClock, Simulator
from scanpay.wechat.states import TradeState

from .conftest import Receiver, order
from .test_v3_flow import native, v3_client


async def test_user_paying_then_success(
    sim: Simulator, client: V2Client, receiver: Receiver, clock: SimClock
) -> None:
    await client.create_native_order(order())
    result = await sim.pay(out_trade_no="order-0001", outcome=PayOutcome.USER_PAYING)
    assert not result.paid
    assert result.trade_state is TradeState.USERPAYING
    await sim.deliver_due_notifications()
    paying = await client.query_order(out_trade_no="order-0001")
    assert paying.trade_state is TradeState.USERPAYING
    assert receiver.bodies == []
    with pytest.raises(InvalidTransitionError) as again:  # the payer is busy with it
        await sim.pay(out_trade_no="order-0001")
    assert again.value.code == "ORDER_NOT_PAYABLE"

    clock.advance(sim.payer.user_paying_seconds - 1)
    await sim.deliver_due_notifications()
    still = await client.query_order(out_trade_no="order-0001")
    assert still.trade_state is TradeState.USERPAYING
    clock.advance(1)
    await sim.deliver_due_notifications()
    paid = await client.query_order(out_trade_no="order-0001")
    assert paid.trade_state is TradeState.SUCCESS
    assert paid.time_end == "20250301100030"  # Beijing time of START + 30 s
    assert len(receiver.bodies) == 1
    outcomes = [p["outcome"] for p in sim.ledger.payments("order-0001")]
    assert outcomes == ["user_paying", "success (refused)", "success"]


async def test_user_paying_over_the_control_api_and_v3(
    sim: Simulator, raw: httpx.AsyncClient, clock: SimClock
) -> None:
    async with v3_client(sim, public_key_mode=True) as client:
        code_url = await client.create_native_order(native(sim))
        answer = await raw.post("/sim/pay", json={"code_url": code_url, "outcome": "user_paying"})
        assert answer.json()["trade_state"] == "USERPAYING"
        seen = await client.query_by_out_trade_no("v3-order-01")
        assert seen.trade_state is TradeState.USERPAYING
        assert seen.transaction_id == ""
        moved = await raw.post("/sim/clock/advance", json={"seconds": 30})
        assert moved.status_code == 200
        done = await client.query_by_out_trade_no("v3-order-01")
        assert done.trade_state is TradeState.SUCCESS
        assert done.transaction_id


async def test_paying_a_closed_v3_order_fails(sim: Simulator) -> None:
    async with v3_client(sim, public_key_mode=True) as client:
        code_url = await client.create_native_order(native(sim))
        await client.close_order("v3-order-01")
    with pytest.raises(InvalidTransitionError) as closed:
        await sim.pay(code_url=code_url)
    assert closed.value.code == "ORDER_CLOSED"
    with pytest.raises(InvalidTransitionError):
        await sim.pay(code_url=code_url, outcome=PayOutcome.USER_PAYING)


async def test_resend_on_demand(
    sim: Simulator, client: V2Client, receiver: Receiver, raw: httpx.AsyncClient
) -> None:
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    await sim.deliver_due_notifications()
    [note] = sim.notification_log()
    assert note["status"] == "delivered"

    answer = await raw.post(f"/sim/notifications/{note['id']}/resend")
    assert answer.status_code == 200
    entry = answer.json()["notification"]
    assert [a["acknowledged"] for a in entry["attempts"]] == [True, True]
    assert len(receiver.bodies) == 2
    assert receiver.bodies[0] == receiver.bodies[1]

    page = (await raw.get("/sim")).text
    assert f'action="/sim/notifications/{note["id"]}/resend"' in page
    assert "SUCCESS" in page  # the merchant's answer is on the page
    form = await raw.post(
        f"/sim/notifications/{note['id']}/resend",
        content=b"",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 303
    assert form.headers["location"] == "/sim"
    assert len(receiver.bodies) == 3

    missing = await raw.post("/sim/notifications/999/resend")
    assert missing.status_code == 404


async def test_resend_revives_a_dropped_notification(
    sim: Simulator, client: V2Client, receiver: Receiver, raw: httpx.AsyncClient
) -> None:
    await raw.post("/sim/faults", json={"faults": {"drop_notifications": 1}})
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    await sim.deliver_due_notifications()
    assert receiver.bodies == []
    [note] = sim.notification_log()
    await raw.post(f"/sim/notifications/{note['id']}/resend")
    assert len(receiver.bodies) == 1
    assert sim.notification_log()[0]["status"] == "delivered"
