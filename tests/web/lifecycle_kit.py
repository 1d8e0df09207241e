"""Shared pieces of the lifecycle tests: the service and the simulator on one test clock,
a fresh database per test (SQLite, or PostgreSQL when ``SCANPAY_TEST_POSTGRES_URL`` is set),
the simulator's faults, and a wire between the service and WeChat that counts calls.

Notification faults (drops, copies, delays, random order) are the simulator's own
(``sim.faults``). The wire's one injector, a close that answers SUCCESS without closing, is
kept because the simulator (rightly) never does that: see :class:`WeChatWire`. Nothing of
scanpay is mocked.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from scanpay.simulator import SimClock, Simulator
from scanpay.simulator.faults import parse_header
from scanpay.web.app import create_app
from scanpay.web.context import AppContext
from scanpay.web.worker import LifecycleRuntime
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.envelope import encode_response
from scanpay.wechat.xmlcodec import parse_xml
from tests.databases import BACKENDS, database_url
from tests.web.conftest import BASE_URL, SHOP_KEY, SettingsFactory

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(name="database_url", params=BACKENDS)
def database_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test: import ``database_url_fixture`` into the test module and
    ask for ``database_url``."""
    with database_url(request.param, tmp_path, "scanpay_lc_") as url:
        yield url


def set_faults(sim: Simulator, text: str, *, seed: int = 1) -> None:
    """Switch on the simulator's faults (``X-Sim-Fault`` text form, ``scenario=NAME``
    allowed), with a seed so the run is repeatable."""
    sim.faults.seed(seed)
    sim.faults.set(parse_header(text), now=sim.clock.timestamp(), replace_all=True)


class LateApp(httpx.AsyncBaseTransport):
    """Reaches an ASGI app set after construction (the two apps know each other)."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


class WeChatWire(httpx.AsyncBaseTransport):
    """Merchant -> WeChat wire: counts calls per path and ``out_trade_no``, and notes calls
    for one ``out_trade_no`` in flight at once (``overlaps``).

    ``lying_close`` answers ``closeorder`` with a signed SUCCESS without closing: a close that
    did not take (a community report in PROTOCOL.md 3.7 of a close "succeeding" wrongly).
    The simulator cannot produce this on its own, by design: its close of an unpaid order is
    atomic, and a close of a paid (or USERPAYING) order answers ORDERPAID, after which the
    service queries and never makes a second attempt. So the both-attempts-paid race, which
    issue 5 wants handled, needs this one wire-level lie."""

    def __init__(self, sim: Simulator) -> None:
        self.inner = httpx.ASGITransport(app=sim.app)
        self.sim = sim
        self.calls: Counter[tuple[str, str]] = Counter()
        self.lying_close = False
        self.in_flight: Counter[str] = Counter()
        self.overlaps = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        fields = parse_xml(body) if body.startswith(b"<") else {}
        out_trade_no = fields.get("out_trade_no", "")
        self.calls[(request.url.path, out_trade_no)] += 1
        if self.lying_close and request.url.path == "/pay/closeorder":
            creds = self.sim.credentials
            answer = encode_response(
                {"appid": creds.appid, "mch_id": creds.mchid, "result_code": "SUCCESS"},
                creds.api_v2_key,
                SignType(fields.get("sign_type", "MD5")),
                nonce="lyingclose0001",
            )
            return httpx.Response(200, content=answer, headers={"Content-Type": "text/xml"})
        self.in_flight[out_trade_no] += 1
        if self.in_flight[out_trade_no] > 1:
            self.overlaps += 1
        try:
            await asyncio.sleep(0)  # let a concurrent worker in, if the lease allowed one
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            return await self.inner.handle_async_request(forwarded)
        finally:
            self.in_flight[out_trade_no] -= 1

    def count(self, path: str) -> int:
        return sum(n for (p, _), n in self.calls.items() if p == path)


@dataclass
class Rig:
    app: FastAPI
    sim: Simulator
    clock: SimClock
    http: httpx.AsyncClient
    wire: WeChatWire

    @property
    def context(self) -> AppContext:
        context: AppContext = self.app.state.scanpay
        return context

    @property
    def runtime(self) -> LifecycleRuntime:
        runtime: LifecycleRuntime = self.app.state.lifecycle
        return runtime

    async def create_order(self, amount: int = 1999) -> dict[str, Any]:
        response = await self.http.post(
            "/api/orders",
            json={"amount": amount, "description": "Tea"},
            headers={"Authorization": f"Bearer {SHOP_KEY}"},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def order(self, order_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get(f"/api/orders/{order_id}")).json()
        return body

    def events(self, order_id: str) -> list[str]:
        return [e.type.value for e in self.context.store.events_after_sync(order_id, 0)]

    def rows(self, sql: str) -> list[Any]:
        with self.context.store.engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))


@asynccontextmanager
async def rig(
    make_settings: SettingsFactory,
    sim: Simulator | None = None,
    **overrides: Any,
) -> AsyncIterator[Rig]:
    """The service on ``sim`` (new, on a frozen test clock, if None) with that clock; the
    simulator's notifications reach this service's app in-process."""
    late = LateApp()
    own_sim = sim is None
    if sim is None:
        sim = Simulator.create(notify_transport=late, clock=SimClock(start=START))
    creds = sim.credentials
    settings = make_settings(
        appid=creds.appid, mchid=creds.mchid, api_v2_key=creds.api_v2_key.reveal(), **overrides
    )
    wire = WeChatWire(sim)
    app = create_app(settings, wechat_transport=wire, clock=sim.clock.now)
    if own_sim:
        late.app = app
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    try:
        yield Rig(app, sim, sim.clock, http, wire)
    finally:
        await http.aclose()
        await app.state.scanpay.aclose()
        if own_sim:
            await sim.stop()
            sim.close()
