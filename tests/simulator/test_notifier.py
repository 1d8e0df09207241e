"""Notification delivery: WeChat's retry schedule on the test clock, and the attempt log."""

from __future__ import annotations

from itertools import accumulate

import httpx
import pytest

from scanpay.client.v2 import V2Client
from scanpay.simulator import RETRY_DELAYS, SimClock, Simulator

from .conftest import Receiver, order

# PROTOCOL.md 2.10: cumulative offsets of the retries after the first attempt.
DOCUMENTED_OFFSETS = [15, 30, 60, 240, 840, 2040, 3840, 5640, 7440, 11040,
                      21840, 32640, 43440, 65040, 86640]  # fmt: skip


async def play_schedule(sim: Simulator, clock: SimClock, steps: int) -> None:
    """Deliver what is due, then step the clock to each next attempt."""
    await sim.deliver_due_notifications()
    for delay in RETRY_DELAYS[:steps]:
        clock.advance(delay - 1)
        assert await sim.deliver_due_notifications() == 0  # not a second early
        clock.advance(1)
        await sim.deliver_due_notifications()


def offsets(sim: Simulator) -> list[float]:
    [note] = sim.notification_log()
    return [attempt["offset_seconds"] for attempt in note["attempts"]]


def test_schedule_matches_protocol() -> None:
    assert list(accumulate(RETRY_DELAYS)) == DOCUMENTED_OFFSETS


async def test_retries_until_acknowledged(
    sim: Simulator, client: V2Client, receiver: Receiver, clock: SimClock
) -> None:
    receiver.failures = 4
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    await play_schedule(sim, clock, steps=6)
    assert offsets(sim) == [0, 15, 30, 60, 240]
    [note] = sim.notification_log()
    assert note["status"] == "delivered"
    assert [a["acknowledged"] for a in note["attempts"]] == [False] * 4 + [True]
    assert "busy" in note["attempts"][0]["answer"]
    assert len(set(receiver.bodies)) == 1  # every retry carries the same signed body


async def test_gives_up_after_the_full_schedule(
    sim: Simulator, client: V2Client, receiver: Receiver, clock: SimClock
) -> None:
    receiver.failures = 100
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    await play_schedule(sim, clock, steps=len(RETRY_DELAYS))
    assert offsets(sim) == [0, *DOCUMENTED_OFFSETS]
    [note] = sim.notification_log()
    assert note["status"] == "failed"
    assert note["next_attempt_at"] is None
    clock.advance(24 * 3600)
    assert await sim.deliver_due_notifications() == 0


async def test_http_errors_and_bad_answers_are_retried(
    sim: Simulator, client: V2Client, receiver: Receiver, clock: SimClock
) -> None:
    receiver.failures, receiver.answer_status = 1, 500
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    await play_schedule(sim, clock, steps=1)
    [note] = sim.notification_log()
    assert [a["http_status"] for a in note["attempts"]] == [500, 200]


async def test_unreachable_merchant_is_logged(clock: SimClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sim = Simulator.create(clock=clock, notify_transport=httpx.MockTransport(refuse))
    async with sim:
        async with V2Client(
            sim.credentials.v2_merchant(),
            base_url="http://sim",
            transport=httpx.ASGITransport(sim.app),
        ) as v2:
            await v2.create_native_order(order())
        await sim.pay(out_trade_no="order-0001")
        await sim.deliver_due_notifications()
    [note] = sim.notification_log()
    assert note["attempts"][0]["error"].startswith("ConnectError")
    assert note["status"] == "pending"
    sim.close()


async def test_control_api_clock_and_log(
    sim: Simulator, client: V2Client, receiver: Receiver, raw: httpx.AsyncClient
) -> None:
    receiver.failures = 1
    created = await client.create_native_order(order())
    paid = await raw.post("/sim/pay", json={"code_url": created.code_url})
    assert paid.json()["paid"] is True
    await raw.post("/sim/notifications/deliver")
    moved = await raw.post("/sim/clock/advance", json={"seconds": 15})
    assert moved.json()["now"] == "2025-03-01T02:00:15+00:00"
    log = (await raw.get("/sim/notifications")).json()
    assert [a["offset_seconds"] for a in log[0]["attempts"]] == [0, 15]
    assert log[0]["status"] == "delivered"
    assert (await raw.get("/sim/clock")).json()["frozen"] is True


@pytest.mark.parametrize("body", [{"seconds": -1}, {"seconds": "1"}, {}, [1]])
async def test_clock_advance_rejects_nonsense(raw: httpx.AsyncClient, body: object) -> None:
    response = await raw.post("/sim/clock/advance", json=body)
    assert response.status_code == 400
