"""Must-show of issue 14: two simulated days, 500 orders, every difference kind injected (by
the simulator's bill faults and by the shop's own records), for v2 and v3 bills. The reports
find exactly the injected differences; payments at 23:59:59 and 00:00:01 Shanghai time land
in their own days' bills and raise nothing; ``missing_remote`` is held, then reported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from scanpay.domain.reconciliation import DifferenceState, Report, ReportStatus
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.simulator.faults import parse_fault
from scanpay.store.tables import events
from scanpay.wechat.v2.bills import DownloadBill

from .kit import World, make_simulator, open_world, shanghai

D1 = date(2025, 3, 1)
D2 = D1 + timedelta(days=1)
PER_DAY = 249  # + one payment at 23:59:59 (day 1) and one at 00:00:01 (day 2): 500 orders

Key = tuple[str, str, str]


@pytest.fixture(params=["v2", "v3"])
async def world(
    request: pytest.FixtureRequest,
    credentials: tuple[MerchantCredentials, SimulatorKeys],
    engine: sa.Engine,
) -> AsyncIterator[World]:
    sim = make_simulator(credentials, shanghai(D1, 0, 30))
    async with open_world(sim, request.param, engine) as world:
        yield world
    sim.close()


def amount(i: int) -> int:
    return (i % 97 + 1) * 10


async def build_day(world: World, day: date, expected: set[Key]) -> None:
    """``PER_DAY`` orders from 00:30 to about 21:20 (one every five minutes)."""
    tag = f"{day:%m%d}"
    for i in range(PER_DAY):
        world.at(shanghai(day, 0, 30) + timedelta(minutes=5 * i))
        number, total = f"rc{world.api}{tag}{i:04d}", amount(i)
        faults: list[str] = []
        if i == 7:
            faults = ["bill_missing"]
            expected.add(("missing_remote", "payment", number))
        elif i == 8:
            faults = ["bill_amount=3"]
            expected.add(("amount_mismatch", "payment", number))
        elif i == 9:
            faults = ["bill_revoked"]
            expected.add(("status_mismatch", "payment", number))
        elif i == 10:
            faults = ["bill_refund_amount=7"]
            expected.add(("refund_mismatch", "refund", f"{number}r"))
        transaction_id = await world.wechat_pays(number, total, *faults)
        if i == 5:
            expected.add(("missing_local", "payment", number))  # the shop never recorded it
        elif i == 6:
            world.shop_records(number, total, None, status="closed")  # paid after it gave up
            expected.add(("missing_local", "payment", number))
        else:
            world.shop_records(number, total, transaction_id)
        if i == 10 or 20 <= i < 30:
            refund = total if i % 2 else total // 2
            await world.wechat_refunds(number, f"{number}r", refund, total)
            world.shop_refunds(number, f"{number}r", refund)
        elif i == 30:  # refunded at WeChat, the shop still waits for the answer
            await world.wechat_refunds(number, f"{number}r", total, total)
            world.shop_refunds(number, f"{number}r", total, status="processing")
            expected.add(("missing_local", "refund", f"{number}r"))
        elif i == 31:  # the shop believes in a refund WeChat never made
            world.shop_refunds(number, f"{number}r", total)
            expected.add(("missing_remote", "refund", f"{number}r"))
    expected.add(("missing_local", "payment", f"simextra{day:%Y%m%d}0001"))  # bill_extra


def keys(report: Report, state: DifferenceState = DifferenceState.OPEN) -> set[Key]:
    return {d.key for d in report.differences if d.state is state}


async def test_two_days_find_exactly_the_injected_differences(world: World) -> None:
    world.sim.faults.set([parse_fault("bill_extra")], now=world.sim.clock.timestamp())
    expected = {D1: set[Key](), D2: set[Key]()}
    await build_day(world, D1, expected[D1])

    # Around midnight: paid 23:59:59 (recorded 00:00:02) and 00:00:01 (recorded 00:00:03).
    late, early = f"rc{world.api}late", f"rc{world.api}early"
    world.at(shanghai(D1, 23, 59, 59))
    world.shop_records(late, 880, await world.wechat_pays(late, 880), delay=3)
    world.at(shanghai(D2, 0, 0, 1))
    world.shop_records(early, 990, await world.wechat_pays(early, 990))
    await build_day(world, D2, expected[D2])
    # Day-1 payments refunded on day 2 land in day 2's bill.
    for i in range(40, 45):
        number = f"rc{world.api}{D1:%m%d}{i:04d}"
        await world.wechat_refunds(number, f"{number}x", 10, amount(i))
        world.shop_refunds(number, f"{number}x", 10)
    world.flush()

    reconciler = world.reconciler()
    world.at(shanghai(D2 + timedelta(days=1), 10, 30))
    # Day 2 first: the 23:59:59 payment (recorded on day 2) is held until day 1's run finds it.
    second = await reconciler.run(D2)
    assert ("missing_remote", "payment", late) in keys(second, DifferenceState.HELD)
    first = await reconciler.run(D1)
    second = await reconciler.report(D2)  # type: ignore[assignment]
    assert second is not None

    not_remote = {k for k in expected[D1] if k[0] != "missing_remote"}
    assert keys(first) == not_remote
    assert keys(first, DifferenceState.HELD) == expected[D1] - not_remote
    assert keys(second) == {k for k in expected[D2] if k[0] != "missing_remote"}
    assert keys(second, DifferenceState.HELD) == {
        k for k in expected[D2] if k[0] == "missing_remote"
    }

    # The midnight payments are in their own days' bills (and in no difference).
    rows = {D1: first, D2: second}
    assert rows[D1].bill.payments == PER_DAY + 1 + 1 - 1  # + late + extra - bill_missing
    assert rows[D2].bill.payments == PER_DAY + 1 + 1 - 1  # + early + extra - bill_missing
    numbers = {d.number for r in rows.values() for d in r.differences}
    assert late not in numbers
    assert early not in numbers
    day_of = {}
    for day in (D1, D2):
        bill = await world.v2.download_bill(DownloadBill.for_day(day))
        day_of.update({r.out_trade_no: (day, r.trade_time) for r in bill.rows})
    assert day_of[late] == (D1, "2025-03-01 23:59:59")
    assert day_of[early] == (D2, "2025-03-02 00:00:01")

    # Three days on, the held ones are reported (and alerted once each).
    world.at(shanghai(D2 + timedelta(days=4), 10, 30))
    await reconciler.run(D2)
    for day in (D1, D2):
        report = await reconciler.report(day)
        assert report is not None
        assert keys(report) == expected[day]
        assert not report.held
        assert report.status is ReportStatus.DIFFERENCES
        assert {k: v for k, v in report.counts().items() if v} == {
            kind: sum(1 for k in expected[day] if k[0] == kind) for kind, _, _ in expected[day]
        }
    with world.engine.connect() as conn:
        alerts = conn.execute(sa.select(events.c.data).where(events.c.type == "alert")).all()
    alerted = {(a.data["kind"], a.data["entry"], a.data["number"]) for a in alerts}
    assert len(alerts) == len(expected[D1]) + len(expected[D2])
    assert alerted == expected[D1] | expected[D2]
