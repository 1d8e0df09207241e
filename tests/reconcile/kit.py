"""A shop ledger written straight into the database, and a simulator whose ledger is built
through its own API (v2 or v3), both on one test clock: what the reconciliation tests use.

Ledger rows are inserted in bulk (orders, payment attempts, refunds) with the times scanpay
would have recorded them, so hundreds of orders cost milliseconds on the shop's side.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from scanpay.client.v2 import V2Client
from scanpay.client.v3 import V3Client
from scanpay.reconcile.service import Reconciler
from scanpay.reconcile.source import ClientBillSource
from scanpay.simulator import SimClock, Simulator
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.simulator.faults import parse_fault
from scanpay.store.reconciliations import ReconciliationStore
from scanpay.store.refunds import refunds
from scanpay.store.tables import orders, payment_attempts
from scanpay.wechat.fields import BEIJING
from scanpay.wechat.v2.orders import UnifiedOrder
from scanpay.wechat.v2.refunds import RefundRequest
from scanpay.wechat.v3.refunds import RefundApplication
from scanpay.wechat.v3.transactions import NativeOrder
from tests.simulator.conftest import make_v3_client

SHOP = "http://shop.test"


def shanghai(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), BEIJING).astimezone(UTC)


async def _ack(request: httpx.Request) -> httpx.Response:
    return httpx.Response(204)


def make_simulator(
    credentials: tuple[MerchantCredentials, SimulatorKeys], start: datetime
) -> Simulator:
    return Simulator.create(
        clock=SimClock(start=start),
        notify_transport=httpx.MockTransport(_ack),
        credentials=credentials,
        public_url="http://sim.test",
    )


def make_v2(sim: Simulator) -> V2Client:
    return V2Client(
        sim.credentials.v2_merchant(),
        base_url="http://sim.test",
        transport=httpx.ASGITransport(app=sim.app),
    )


@asynccontextmanager
async def open_world(sim: Simulator, api: str, engine: sa.Engine) -> AsyncIterator[World]:
    """A :class:`World` on ``sim`` and ``engine``, its two clients open until leaving."""
    async with make_v2(sim) as v2, make_v3_client(sim) as v3:
        yield World(sim, api, v2, v3, engine)


@dataclass
class World:
    """The simulator, a client of ``api`` version, and the shop's rows to be inserted."""

    sim: Simulator
    api: str
    v2: V2Client
    v3: V3Client
    engine: sa.Engine
    order_rows: list[dict[str, Any]] = field(default_factory=list)
    attempt_rows: list[dict[str, Any]] = field(default_factory=list)
    refund_rows: list[dict[str, Any]] = field(default_factory=list)
    attempt_of: dict[str, tuple[str, str, int]] = field(default_factory=dict)

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.sim.clock.now

    def at(self, moment: datetime) -> None:
        self.sim.clock.advance((moment - self.sim.clock.now()).total_seconds())

    def reconciler(self, hold_days: int = 3) -> Reconciler:
        source = ClientBillSource(self.api, v2=self.v2, v3=self.v3)
        store = ReconciliationStore(self.engine, clock=self.clock)
        return Reconciler(store, source, clock=self.clock, hold_days=hold_days)

    async def wechat_pays(self, number: str, amount: int, *faults: str) -> str:
        """The order is created and paid at the simulator now; its transaction_id."""
        if faults:
            self.sim.faults.for_order(number, [parse_fault(f) for f in faults])
        if self.api == "v2":
            order = UnifiedOrder(
                out_trade_no=number, body="茶叶", total_fee=amount,
                notify_url=f"{SHOP}/notify/v2", product_id="tea",
            )  # fmt: skip
            code_url = (await self.v2.create_native_order(order)).code_url
        else:
            code_url = await self.v3.create_native_order(
                NativeOrder(
                    appid=self.sim.credentials.appid,
                    mchid=self.sim.credentials.mchid,
                    description="茶叶",
                    out_trade_no=number,
                    notify_url=f"{SHOP}/notify/v3",
                    total=amount,
                )
            )
        return (await self.sim.pay(code_url=code_url)).transaction_id

    async def wechat_refunds(
        self, number: str, out_refund_no: str, amount: int, total: int
    ) -> None:
        """A refund requested now and settled one simulated second later."""
        if self.api == "v2":
            await self.v2.refund(
                RefundRequest(
                    out_refund_no=out_refund_no,
                    total_fee=total,
                    refund_fee=amount,
                    out_trade_no=number,
                )
            )
        else:
            await self.v3.create_refund(
                RefundApplication(
                    out_refund_no=out_refund_no, refund=amount, total=total, out_trade_no=number
                )
            )
        self.sim.clock.advance(1)
        self.sim.refunds.settle()

    def shop_records(
        self,
        number: str,
        amount: int,
        transaction_id: str | None,
        *,
        status: str = "paid",
        delay: float = 2.0,
    ) -> None:
        """The shop's order and attempt, recorded ``delay`` seconds from now."""
        now = self.sim.clock.now() + timedelta(seconds=delay)
        order_id = "ord_" + secrets.token_urlsafe(16)
        attempt_id = "att_" + secrets.token_urlsafe(16)
        self.order_rows.append(
            {"id": order_id, "amount": amount, "currency": "CNY", "description": "茶叶",
             "status": "paid" if status == "paid" else "closed", "last_seq": 0,
             "created_at": now, "updated_at": now}
        )  # fmt: skip
        self.attempt_rows.append(
            {"id": attempt_id, "order_id": order_id, "out_trade_no": number,
             "api_version": self.api, "appid": self.sim.credentials.appid,
             "mchid": self.sim.credentials.mchid, "amount": amount, "currency": "CNY",
             "status": status, "transaction_id": transaction_id, "created_at": now,
             "updated_at": now}
        )  # fmt: skip
        self.attempt_of[number] = (order_id, attempt_id, amount)

    def shop_refunds(
        self, number: str, out_refund_no: str, amount: int, *, status: str = "success"
    ) -> None:
        now = self.sim.clock.now() + timedelta(seconds=1)
        order_id, attempt_id, total = self.attempt_of[number]
        self.refund_rows.append(
            {"id": "rfd_" + secrets.token_urlsafe(16), "order_id": order_id,
             "attempt_id": attempt_id, "out_trade_no": number, "out_refund_no": out_refund_no,
             "amount": amount, "total": total, "currency": "CNY", "reason": "",
             "status": status, "settles_order": amount == total,
             "fingerprint": secrets.token_hex(16), "created_at": now, "updated_at": now}
        )  # fmt: skip

    def flush(self) -> None:
        """Insert the shop's rows collected so far."""
        with self.engine.begin() as conn:
            for table, rows in (
                (orders, self.order_rows),
                (payment_attempts, self.attempt_rows),
                (refunds, self.refund_rows),
            ):
                if rows:
                    conn.execute(sa.insert(table), rows)
                rows.clear()
