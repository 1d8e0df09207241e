"""Shared pieces of the lifecycle tests: the service and the simulator on one test clock, and
network fault injectors (httpx transports that drop, repeat, reorder or answer for WeChat).

The fault injectors sit on the wire between the two real apps; nothing of scanpay is mocked.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from scanpay.simulator import SimClock, Simulator
from scanpay.web.app import create_app
from scanpay.web.context import AppContext
from scanpay.web.worker import LifecycleRuntime
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.envelope import encode_response
from scanpay.wechat.xmlcodec import parse_xml
from tests.web.conftest import BASE_URL, SHOP_KEY, SettingsFactory

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class LateApp(httpx.AsyncBaseTransport):
    """Reaches an ASGI app set after construction (the two apps know each other)."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


class NotifyFaults(httpx.AsyncBaseTransport):
    """WeChat -> merchant wire: drops a share of notifications (the simulator sees a network
    error) and holds the rest, to deliver each ``copies`` times in random order on flush."""

    def __init__(self, *, drop: float, copies: int, seed: int) -> None:
        self.inner: httpx.AsyncBaseTransport = LateApp()  # set by rig()
        self.drop = drop
        self.copies = copies
        self.random = random.Random(seed)
        self.held: list[httpx.Request] = []
        self.dropped = 0
        self.enabled = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.enabled:
            return await self.inner.handle_async_request(request)
        if self.random.random() < self.drop:
            self.dropped += 1
            raise httpx.ConnectError("dropped by the test's network", request=request)
        body = await request.aread()
        for _ in range(self.copies):
            self.held.append(
                httpx.Request(request.method, request.url, headers=request.headers, content=body)
            )
        ok = b"<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>"
        return httpx.Response(200, content=ok, headers={"Content-Type": "text/xml"})

    async def flush(self, concurrency: int = 16) -> list[int]:
        held, self.held = self.held, []
        self.random.shuffle(held)
        gate = asyncio.Semaphore(concurrency)

        async def send(request: httpx.Request) -> int:
            async with gate:
                response = await self.inner.handle_async_request(request)
                await response.aread()
                return response.status_code

        return list(await asyncio.gather(*(send(r) for r in held)))


class WeChatWire(httpx.AsyncBaseTransport):
    """Merchant -> WeChat wire: counts calls per path and ``out_trade_no``; optionally answers
    ``closeorder`` with a signed SUCCESS without closing (a close that did not take, as
    reported for WeChat in PROTOCOL.md 3.7), to produce a double payment."""

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
    faults: NotifyFaults | None = None,
    **overrides: Any,
) -> AsyncIterator[Rig]:
    """The service on ``sim`` (new, on a frozen test clock, if None) with that clock."""
    late = LateApp()
    own_sim = sim is None
    if sim is None:
        if faults is not None:
            faults.inner = late
        sim = Simulator.create(notify_transport=faults or late, clock=SimClock(start=START))
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
