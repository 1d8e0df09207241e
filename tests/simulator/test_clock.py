"""The test clock over the control API: ``POST /sim/clock/advance`` makes due retries, delayed
notifications and "user paying" completions happen, lets ``time_expire`` pass, and plays the
whole 24h4m retry schedule of PROTOCOL.md 2.10 in well under a second of real time.
(tests/simulator/test_notifier.py checks the same schedule through the Python API.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from scanpay.client.v2 import V2Client
from scanpay.simulator import RETRY_DELAYS, SimClock, Simulator
from scanpay.wechat.fields import BEIJING

from .conftest import START, Receiver, order
from .test_notifier import DOCUMENTED_OFFSETS
from .test_v3_flow import native, v3_client


async def advance(raw: httpx.AsyncClient, seconds: float) -> None:
    answer = await raw.post("/sim/clock/advance", json={"seconds": seconds})
    assert answer.status_code == 200


async def test_whole_retry_schedule_over_the_control_api(
    sim: Simulator, client: V2Client, receiver: Receiver, raw: httpx.AsyncClient
) -> None:
    receiver.failures = 1000
    await client.create_native_order(order())
    await raw.post("/sim/pay", json={"out_trade_no": "order-0001"})
    await raw.post("/sim/notifications/deliver")
    for delay in RETRY_DELAYS:
        await advance(raw, delay)  # advancing delivers what became due
    [note] = (await raw.get("/sim/notifications")).json()
    assert [a["offset_seconds"] for a in note["attempts"]] == [0, *DOCUMENTED_OFFSETS]
    assert note["status"] == "failed"
    assert len(receiver.bodies) == 16
    await advance(raw, 48 * 3600)
    assert len(receiver.bodies) == 16  # WeChat gives up after 24h4m


async def test_advance_delivers_a_due_retry(
    sim: Simulator, client: V2Client, receiver: Receiver, raw: httpx.AsyncClient
) -> None:
    receiver.failures = 1
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    await sim.deliver_due_notifications()
    await advance(raw, 14)
    assert len(receiver.bodies) == 1
    await advance(raw, 1)
    assert len(receiver.bodies) == 2
    assert (await raw.get("/sim/notifications")).json()[0]["status"] == "delivered"


async def test_advance_releases_a_delayed_notification(
    sim: Simulator, client: V2Client, receiver: Receiver, raw: httpx.AsyncClient
) -> None:
    await raw.post("/sim/faults", json={"faults": {"delay_notifications": 300}})
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    await raw.post("/sim/notifications/deliver")
    await advance(raw, 299)
    assert receiver.bodies == []
    await advance(raw, 1)
    assert len(receiver.bodies) == 1


async def test_the_background_notifier_follows_the_clock(
    sim: Simulator, client: V2Client, receiver: Receiver, clock: SimClock
) -> None:
    """No explicit delivery call: advancing wakes the running notifier."""
    receiver.failures = 1
    await client.create_native_order(order())
    await sim.pay(out_trade_no="order-0001")
    await wait_for(lambda: len(receiver.bodies) == 1)
    clock.advance(15)
    await wait_for(lambda: len(receiver.bodies) == 2)


async def wait_for(condition: Callable[[], bool]) -> None:
    """Wait for the background notifier (a generous deadline: the machine may be loaded)."""
    deadline = time.monotonic() + 20.0
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the notifier did not act")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("api", ["v2", "v3"])
async def test_time_expire_plays_out(
    sim: Simulator, client: V2Client, raw: httpx.AsyncClient, api: str
) -> None:
    expire = (START + timedelta(minutes=10)).astimezone(BEIJING)
    if api == "v2":
        created = await client.create_native_order(
            order(time_expire=expire.strftime("%Y%m%d%H%M%S"))
        )
        code_url = created.code_url
    else:
        async with v3_client(sim, public_key_mode=True) as v3:
            code_url = await v3.create_native_order(replace(native(sim), time_expire=expire))
    await advance(raw, 9 * 60 + 59)
    scan = await raw.get("/sim/scan", params={"code_url": code_url})
    assert scan.status_code == 200  # still payable a second before
    await advance(raw, 1)
    refused = await raw.post("/sim/pay", json={"code_url": code_url})
    assert refused.status_code == 409
    assert refused.json()["error"] == "ORDER_EXPIRED"
