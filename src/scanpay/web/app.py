"""``create_app(settings, wechat_transport=None)``: the merchant service as an ASGI app.

Everything is built inside the factory (nothing at import time): the database engine (and
the schema upgraded to the latest migration), the WeChat Pay clients (v2 and/or v3,
:mod:`scanpay.web.wiring`), the use cases and
the routes. ``wechat_transport`` lets tests reach the simulator in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from scanpay.config import Settings
from scanpay.domain.model import utcnow
from scanpay.domain.refunds import RefundService
from scanpay.domain.service import PaymentService
from scanpay.store.migrate import make_engine, upgrade
from scanpay.store.refunds import SqlRefundStore
from scanpay.web import api, errors, events, notify, notify_v3, pages, shop_api
from scanpay.web.context import AppContext
from scanpay.web.front import ScanpayApp
from scanpay.web.hub import ChangeHub
from scanpay.web.limits import BodyLimit
from scanpay.web.reconciliation_wiring import build_reconciliation
from scanpay.web.reconciliations_api import router as reconciliations_router
from scanpay.web.wiring import Extras, build_wechat
from scanpay.web.worker import RefundServiceRefunder, build_lifecycle, policy_from

STATIC: Final = Path(__file__).resolve().parent / "static"
API_BODY_LIMIT: Final = 16 * 1024


def create_app(
    settings: Settings,
    wechat_transport: httpx.AsyncBaseTransport | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """Build the merchant service for ``settings``."""
    engine = make_engine(settings.database_url)
    if settings.migrate_on_startup:
        upgrade(engine)
    store = SqlRefundStore(engine, clock=clock)
    wechat = build_wechat(settings, wechat_transport)
    hub = ChangeHub()
    gateway = wechat.gateway
    refunds = RefundService(store, gateway, clock=clock, on_change=hub.notify)
    service = PaymentService(
        store,
        gateway,
        clock=clock,
        on_change=hub.notify,
        policy=policy_from(settings),
        refunder=RefundServiceRefunder(refunds),
    )
    lifecycle = build_lifecycle(settings, service, clock, refunds)

    context = AppContext(settings=settings, store=store, service=service, hub=hub, client=wechat)
    reconciliations, daily_reconciliation = build_reconciliation(settings, engine, wechat, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            # the reconciler task (docs/operations.md), the day's bill (docs/reconciliation.md)
            async with lifecycle.running(), daily_reconciliation():
                yield
        finally:
            await context.aclose()

    app = ScanpayApp(
        title="scanpay merchant service",
        version="0.1.0",
        summary="WeChat Pay Native (QR code) payments for a shop",
        lifespan=lifespan,
    )
    app.state.scanpay = context
    app.state.lifecycle = lifecycle
    app.state.extras = Extras(refunds=refunds, store=store, wechat=wechat)
    app.state.templates = pages.make_environment()
    errors.install(app)
    app.include_router(api.router)
    app.include_router(events.router)
    app.include_router(shop_api.router)
    app.include_router(pages.router)
    app.state.reconciliations = reconciliations
    app.include_router(reconciliations_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # The notification endpoints are plain Starlette routes (they read the raw body): their
    # POSTs take the short path (scanpay.web.front), other methods FastAPI's router (405).
    app.router.routes[0:0] = [*notify.ROUTES, *notify_v3.ROUTES]
    document_routes(app, {**notify.OPENAPI, **notify_v3.OPENAPI})

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    notify_limit = settings.notify_max_bytes
    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: notify_limit if path.startswith("/notify/") else API_BODY_LIMIT,
    )
    for route in (*notify.ROUTES, *notify_v3.ROUTES):
        app.add_short_path(route.path, route.endpoint, notify_limit)
    return app


def document_routes(app: FastAPI, paths: dict[str, dict[str, Any]]) -> None:
    """Add OpenAPI ``paths`` entries for routes FastAPI does not document itself."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("paths", {}).update(paths)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
