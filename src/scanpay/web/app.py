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

from scanpay.config import Settings
from scanpay.domain.model import utcnow
from scanpay.domain.refunds import RefundService
from scanpay.domain.service import PaymentService
from scanpay.store.migrate import check_schema, make_engine
from scanpay.store.query_log import SqlQueryLog
from scanpay.store.refunds import SqlRefundStore
from scanpay.web import (
    api,
    cluster,
    error_pages,
    errors,
    events,
    notify,
    notify_v3,
    operations,
    pages,
    shop_api,
    webhooks_api,
)
from scanpay.web.console.queries_view import install as install_query_log
from scanpay.web.console.setup import install as install_console
from scanpay.web.context import AppContext
from scanpay.web.crosslinks import install as install_crosslinks
from scanpay.web.front import ScanpayApp
from scanpay.web.hub import ChangeHub
from scanpay.web.limits import BodyLimit
from scanpay.web.reconciliation_wiring import build_reconciliation
from scanpay.web.reconciliations_api import router as reconciliations_router
from scanpay.web.wiring import Extras, build_wechat
from scanpay.web.worker import RefundServiceRefunder, build_lifecycle, policy_from
from scanpay.webhooks.runtime import build_webhooks

STATIC: Final = Path(__file__).resolve().parent / "static"
API_BODY_LIMIT: Final = 16 * 1024


def create_app(
    settings: Settings,
    wechat_transport: httpx.AsyncBaseTransport | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """Build the merchant service for ``settings``."""
    engine = make_engine(settings.database_url, **cluster.engine_options(settings))
    # upgraded to this code's head, or refused (a newer schema; an older one not upgraded)
    check_schema(engine, upgrade_first=settings.migrate_on_startup)
    store = SqlRefundStore(engine, clock=clock)
    wechat = build_wechat(settings, wechat_transport)
    hub = ChangeHub(interval=settings.stream_poll_seconds)
    cluster_runtime = cluster.ClusterRuntime(settings, engine, hub)
    # webhooks (issue 11): every change made here also wakes the outbox's delivery worker
    webhooks = build_webhooks(settings, engine, store._run, clock)

    def on_change(order_id: str) -> None:
        hub.notify(order_id)
        webhooks.wake(order_id)

    gateway = wechat.gateway
    refunds = RefundService(store, gateway, clock=clock, on_change=on_change)
    service = PaymentService(
        store,
        gateway,
        clock=clock,
        on_change=on_change,
        policy=policy_from(settings),
        refunder=RefundServiceRefunder(refunds),
    )
    lifecycle = build_lifecycle(settings, service, clock, refunds)

    context = AppContext(settings=settings, store=store, service=service, hub=hub, client=wechat)
    reconciliations, daily_reconciliation = build_reconciliation(settings, engine, wechat, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            # the reconciler task (docs/operations.md); pruning, certificate refresh (issue 9);
            # the webhook worker (docs/webhooks.md); LISTEN on PostgreSQL (docs/deployment.md)
            async with (
                lifecycle.running(),
                housekeeper.running(),
                webhooks.running(),
                cluster_runtime.running(),
                daily_reconciliation(),  # the day's bill (docs/reconciliation.md)
            ):
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
    app.state.cluster = cluster_runtime
    app.state.templates = pages.make_environment()
    app.state.webhooks = webhooks
    errors.install(app)
    error_pages.install(app)  # browsers get pages, API clients JSON (issue 10)
    app.include_router(api.router)
    app.include_router(events.router)
    app.include_router(shop_api.router)
    app.include_router(pages.router)
    app.mount("/static", app.state.templates.assets, name="static")  # fingerprinted, gzip
    app.include_router(webhooks_api.router)
    app.include_router(cluster.router)
    app.state.reconciliations = reconciliations
    app.include_router(reconciliations_router)
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
    # issue 9: refusals, request ids, metrics, housekeeping (scanpay.web.operations)
    housekeeper = operations.install(app, settings, store, hub, wechat, clock)
    # the operator console (issue 12): app.state.console is where later parts plug in
    if settings.console_enabled:
        install_console(app, settings, engine, service, refunds, hub, clock)
    # joins between the parts above: webhook backlog metric, console webhooks/reconciliation
    install_crosslinks(app, engine, clock)
    # active queries to WeChat and their answers, recorded and in the console's timeline
    install_query_log(app, service, SqlQueryLog(store.engine, store.run_blocking))
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
