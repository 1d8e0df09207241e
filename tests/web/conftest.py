"""Fixtures for the service tests: a settings factory that never reads the environment, and
the service wired to the project's simulator in-process (httpx.ASGITransport both ways)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from scanpay.config import Settings
from scanpay.simulator import Simulator, generate_credentials
from scanpay.simulator.credentials import MerchantCredentials, SimulatorKeys
from scanpay.web.app import create_app
from scanpay.web.context import AppContext

SHOP_KEY = "shop-key-for-tests-0123456789"
BASE_URL = "http://shop.test"


class IsolatedSettings(Settings):
    """Settings built only from the arguments: no environment, no .env file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'shop.sqlite3'}",
            "public_base_url": BASE_URL,
            "shop_api_key": SHOP_KEY,
            "wechat_base_url": "http://wechat.test",
            "appid": "wx0000000000000001",
            "mchid": "1900000001",
            "api_v2_key": "k" * 32,
        }
        values.update(overrides)
        return IsolatedSettings(**values)

    return factory


class LateASGITransport(httpx.AsyncBaseTransport):
    """An ASGITransport whose app is set after construction (the two apps know each other)."""

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.app is not None
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


@dataclass
class Shop:
    """The merchant service, the simulator, and an HTTP client for the service."""

    app: FastAPI
    sim: Simulator
    http: httpx.AsyncClient
    settings: Settings

    @property
    def context(self) -> AppContext:
        context: AppContext = self.app.state.scanpay
        return context

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {SHOP_KEY}"}

    async def create_order(self, amount: int = 1999, description: str = "Tea") -> dict[str, Any]:
        response = await self.http.post(
            "/api/orders", json={"amount": amount, "description": description}, headers=self.auth
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def count(self, table: str) -> int:
        with self.context.store.engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()  # type: ignore[no-any-return]

    def snapshot(self) -> list[tuple[Any, ...]]:
        """Every business row (orders, attempts, events) for "nothing changed" checks."""
        rows: list[tuple[Any, ...]] = []
        with self.context.store.engine.connect() as conn:
            for table in ("orders", "payment_attempts", "events", "idempotency_keys"):
                rows += [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
        return rows

    def event_types(self, order_id: str) -> list[str]:
        return [e.type.value for e in self.context.store.events_after_sync(order_id, 0)]


@asynccontextmanager
async def running_shop(
    sim: Simulator, late: LateASGITransport, settings: Settings
) -> AsyncIterator[Shop]:
    """The service for ``settings`` in process, calling ``sim`` (whose notifications reach it
    through ``late``); the service and the simulator are closed on leaving."""
    app = create_app(settings, wechat_transport=httpx.ASGITransport(app=sim.app))
    late.app = app
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    try:
        yield Shop(app, sim, http, settings)
    finally:
        await http.aclose()
        await app.state.scanpay.aclose()
        await sim.stop()
        sim.close()


@asynccontextmanager
async def simulated_shop(
    make_settings: SettingsFactory,
    credentials: tuple[MerchantCredentials, SimulatorKeys] | None = None,
    **overrides: Any,
) -> AsyncIterator[Shop]:
    """:func:`running_shop` with a new in-memory simulator (of ``credentials`` when given) as
    WeChat Pay and its merchant's v2 credentials in ``make_settings(**overrides)``."""
    late = LateASGITransport()
    sim = Simulator.create(notify_transport=late, credentials=credentials)
    creds = sim.credentials
    settings = make_settings(
        appid=creds.appid,
        mchid=creds.mchid,
        api_v2_key=creds.api_v2_key.reveal(),
        **overrides,
    )
    async with running_shop(sim, late, settings) as opened:
        yield opened


@pytest.fixture
async def shop(make_settings: SettingsFactory) -> AsyncIterator[Shop]:
    async with simulated_shop(make_settings, simulator_phone_url="http://sim.test/sim/scan") as s:
        yield s


@pytest.fixture(scope="module")
def credentials() -> tuple[MerchantCredentials, SimulatorKeys]:
    """Merchant and simulator keys, made once per test module (making them is slow)."""
    return generate_credentials()
