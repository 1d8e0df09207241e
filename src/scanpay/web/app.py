"""``create_app(settings, wechat_transport=None)``: the merchant service as an ASGI app.

Everything is built inside the factory (nothing at import time): the database engine (and
the schema upgraded to the latest migration), the WeChat Pay v2 client, the use cases and
the routes. ``wechat_transport`` lets tests reach the simulator in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from scanpay.client.v2 import V2Client
from scanpay.config import Settings
from scanpay.domain.service import PaymentService
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.sql import SqlStore
from scanpay.web import api, errors, events, notify, pages
from scanpay.web.context import AppContext
from scanpay.web.gateway import V2Gateway
from scanpay.web.hub import ChangeHub
from scanpay.web.limits import BodyLimit
from scanpay.wechat.secret import Secret
from scanpay.wechat.states import SignType
from scanpay.wechat.v2.envelope import V2Merchant

STATIC: Final = Path(__file__).resolve().parent / "static"
API_BODY_LIMIT: Final = 16 * 1024


def create_app(
    settings: Settings, wechat_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the merchant service for ``settings``."""
    engine = make_engine(settings.database_url)
    if settings.migrate_on_startup:
        upgrade(engine)
    store = SqlStore(engine)
    merchant = V2Merchant(
        appid=settings.appid,
        mch_id=settings.mchid,
        key=Secret(settings.api_v2_key.get_secret_value()),
        sign_type=SignType(settings.sign_type),
    )
    client = V2Client(
        merchant,
        base_url=settings.wechat_base_url,
        transport=wechat_transport,
        timeout=settings.wechat_timeout_seconds,
    )
    hub = ChangeHub()
    gateway = V2Gateway(client, notify_url=settings.notify_url_v2)
    service = PaymentService(store, gateway, on_change=hub.notify)

    context = AppContext(settings=settings, store=store, service=service, hub=hub, client=client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await context.aclose()

    app = FastAPI(
        title="scanpay merchant service",
        version="0.1.0",
        summary="WeChat Pay Native (QR code) payments for a shop",
        lifespan=lifespan,
    )
    app.state.scanpay = context
    app.state.templates = pages.make_environment()
    errors.install(app)
    app.include_router(api.router)
    app.include_router(events.router)
    app.include_router(notify.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    notify_limit = settings.notify_max_bytes
    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: notify_limit if path.startswith("/notify/") else API_BODY_LIMIT,
    )
    return app
