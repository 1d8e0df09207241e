"""The daily run inside ``scanpay serve``: it waits for 10:00 Shanghai, retries while WeChat
is still generating the bill (storing and alerting nothing meanwhile), reconciles yesterday
once, and with two instances only the lease holder runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from scanpay.domain.reconciliation import ReportStatus
from scanpay.reconcile.runner import DailyRunner, Tick
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.simulator.faults import parse_fault
from scanpay.store.reconciliations import ReconciliationStore, reports
from scanpay.store.tables import events

from .kit import World, make_simulator, open_world, shanghai

D1 = date(2025, 3, 1)
D2 = D1 + timedelta(days=1)


@pytest.fixture(params=["v2", "v3"])
async def world(
    request: pytest.FixtureRequest,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
    engine: sa.Engine,
) -> AsyncIterator[World]:
    sim = make_simulator(credentials, shanghai(D1, 9, 0))
    async with open_world(sim, request.param, engine) as world:
        yield world
    sim.close()


def stored(world: World) -> tuple[int, int]:
    with world.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(reports)).scalar_one()
        alerts = conn.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.type == "alert")
        ).scalar_one()
    return count, alerts


async def test_a_run_before_the_bill_exists_retries_and_reports_nothing(world: World) -> None:
    for i in range(6):
        world.at(shanghai(D1, 9 + i, 30))
        number = f"dr{world.api}{i:03d}"
        world.shop_records(number, 100 + i, await world.wechat_pays(number, 100 + i))
    # paid at 23:59:59, recorded by the shop after midnight
    world.at(shanghai(D1, 23, 59, 59))
    world.shop_records("drlate01", 500, await world.wechat_pays("drlate01", 500), delay=3)
    world.flush()
    runner = DailyRunner(world.reconciler(), clock=world.clock, retry_seconds=600)

    world.at(shanghai(D2, 9, 59))
    assert await runner.tick() is Tick.WAITING  # before 10:00: WeChat's bill is not asked for
    world.sim.faults.set([parse_fault("bill_not_ready")], now=world.sim.clock.timestamp())
    world.at(shanghai(D2, 10, 0, 30))
    assert await runner.tick() is Tick.NOT_READY
    assert stored(world) == (0, 0)
    world.sim.clock.advance(60)
    assert await runner.tick() is Tick.BACKING_OFF
    world.sim.clock.advance(600)
    assert await runner.tick() is Tick.NOT_READY  # asked again, still being generated
    assert stored(world) == (0, 0)

    world.sim.faults.clear()
    world.sim.clock.advance(600)
    assert await runner.tick() is Tick.RECONCILED
    report = await runner.reconciler.report(D1)
    assert report is not None
    assert report.status is ReportStatus.MATCHED
    assert report.differences == []
    assert (report.bill.payments, report.ledger.payments) == (7, 6)  # the late one: day 2
    assert stored(world) == (1, 0)
    assert await runner.tick() is Tick.DONE


async def test_only_the_lease_holder_runs(world: World, engine: sa.Engine) -> None:
    world.at(shanghai(D1, 12))
    world.shop_records("lease0001", 100, await world.wechat_pays("lease0001", 100))
    world.flush()
    first = DailyRunner(world.reconciler(), clock=world.clock, holder="instance-a")
    second = DailyRunner(world.reconciler(), clock=world.clock, holder="instance-b")
    world.at(shanghai(D2, 10, 5))
    store = ReconciliationStore(engine, clock=world.clock)
    assert store.take_lease("daily", "instance-a", 600)  # instance a is busy with it
    assert await second.tick() is Tick.LEASED
    assert stored(world) == (0, 0)
    store.release_lease("daily", "instance-a")
    assert await second.tick() is Tick.RECONCILED
    assert await first.tick() is Tick.DONE  # the report tells the other instance
    # an abandoned lease runs out
    assert store.take_lease("other", "instance-a", 60)
    assert not store.take_lease("other", "instance-b", 60)
    world.sim.clock.advance(61)
    assert store.take_lease("other", "instance-b", 60)
