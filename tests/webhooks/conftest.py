"""The service wired to the simulator in-process (as tests/web), with its webhook worker
running and a real receiver on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scanpay.simulator import PayOutcome, Simulator
from scanpay.webhooks.runtime import WebhookRuntime
from scanpay.webhooks.signing import generate_secret
from tests.web.conftest import BASE_URL, SHOP_KEY, IsolatedSettings, LateASGITransport, Shop
from tests.webhooks.receiver import Receiver, serve_receiver

AUTH = {"Authorization": f"Bearer {SHOP_KEY}"}


class HookedShop(Shop):
    secret: str
    receiver: Receiver

    @property
    def webhooks(self) -> WebhookRuntime:
        runtime: WebhookRuntime = self.app.state.webhooks
        return runtime

    async def pay(self, order: dict[str, Any]) -> None:
        await self.sim.pay(code_url=order["code_url"], outcome=PayOutcome.SUCCESS)
        assert await self.sim.deliver_due_notifications() >= 1

    async def arrived(self, count: int, within: float = 20.0) -> list[Any]:
        """Wait (without blocking the loop) until ``count`` requests reached the receiver."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.receiver.received) < count:
            if loop.time() > deadline:
                got = len(self.receiver.received)
                raise AssertionError(f"{got} of {count} webhooks arrived")
            await asyncio.sleep(0.02)
        return list(self.receiver.received)

    async def recorded(self, event_id: str, attempts: int, within: float = 20.0) -> Any:
        """The event's detail once its first delivery has ``attempts`` attempts recorded
        (the receiver sees a request before the worker records its answer)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            detail = (await self.http.get(f"/api/events/{event_id}", headers=AUTH)).json()
            if detail["deliveries"] and len(detail["deliveries"][0]["history"]) >= attempts:
                return detail
            if loop.time() > deadline:
                raise AssertionError(f"{event_id}: {attempts} attempts not recorded")
            await asyncio.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as found:
        yield found


async def open_hooked(
    tmp_path: Path, receiver: Receiver, **overrides: Any
) -> AsyncIterator[HookedShop]:
    late = LateASGITransport()
    sim = Simulator.create(notify_transport=late)
    creds = sim.credentials
    secret = generate_secret()
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
        "public_base_url": BASE_URL,
        "shop_api_key": SHOP_KEY,
        "wechat_base_url": "http://wechat.test",
        "appid": creds.appid,
        "mchid": creds.mchid,
        "api_v2_key": creds.api_v2_key.reveal(),
        "webhook_url": receiver.url,
        "webhook_secret": secret,
        "webhook_allow_private": True,
        "webhook_retry_schedule": "0,0.2,0.2,0.2",
        "webhook_poll_seconds": 0.05,
        "reconciler_enabled": False,
    }
    values.update(overrides)
    settings = IsolatedSettings(**values)
    from scanpay.web.app import create_app

    app = create_app(settings, wechat_transport=httpx.ASGITransport(app=sim.app))
    late.app = app
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    shop = HookedShop(app, sim, http, settings)
    shop.secret = secret
    shop.receiver = receiver
    try:
        async with shop.webhooks.running():
            yield shop
    finally:
        await http.aclose()
        await app.state.scanpay.aclose()
        await sim.stop()
        sim.close()


@pytest.fixture
async def hooked(tmp_path: Path, receiver: Receiver) -> AsyncIterator[HookedShop]:
    async for shop in open_hooked(tmp_path, receiver):
        yield shop
