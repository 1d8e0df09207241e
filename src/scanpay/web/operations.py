"""What makes the service operable and hard to abuse (issue 9), hooked into ``create_app``.

* :func:`install`: the :class:`~scanpay.web.refusals.Doorkeeper` for ``/notify/*``, the request
  observer (request ids, duration metric, access line), WeChat call metrics, and ``GET
  /metrics`` (only with ``Authorization: Bearer <SCANPAY_METRICS_TOKEN>``; without a token the
  route answers 404 and metrics are served, when ``SCANPAY_METRICS_PORT`` is set, on
  127.0.0.1 at that port instead).
* :class:`Housekeeper`: background tasks beside the reconciler: retention pruning every
  ``SCANPAY_RETENTION_PRUNE_SECONDS`` and, in platform-certificate mode, a certificate
  download at start and every ``SCANPAY_PLATFORM_CERT_REFRESH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)

from scanpay.client.v3 import V3Client
from scanpay.config import Settings
from scanpay.errors import ScanpayError
from scanpay.observability import metrics
from scanpay.observability.http import RequestObserver
from scanpay.observability.transitions import watch_store
from scanpay.observability.wechat_calls import instrument
from scanpay.store.housekeeping import Retention, prune
from scanpay.store.refunds import SqlRefundStore
from scanpay.web.front import ScanpayApp
from scanpay.web.hub import ChangeHub
from scanpay.web.refusals import Doorkeeper, SourceLimiter, parse_networks
from scanpay.web.wiring import WeChatClients

log = logging.getLogger(__name__)


def retention_of(settings: Settings) -> Retention:
    return Retention(
        accepted_days=settings.retention_accepted_days,
        refused_days=settings.retention_refused_days,
        events_days=settings.retention_events_days,
        idempotency_days=settings.retention_idempotency_days,
    )


class Housekeeper:
    """Retention pruning and the scheduled certificate refresh (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: SqlRefundStore,
        v3: V3Client | None,
        clock: Callable[[], datetime],
        registry: CollectorRegistry,
    ) -> None:
        self.settings = settings
        self.store = store
        self.v3 = v3 if v3 is not None and v3.download_certificates else None
        self.clock = clock
        self.registry = registry

    async def prune_once(self) -> int:
        pruned = await self.store.run_blocking(
            prune, self.store.engine, self.clock(), retention_of(self.settings)
        )
        for kind in ("accepted", "refused", "events", "idempotency_keys", "queries"):
            metrics.PRUNED.labels(kind).inc(getattr(pruned, kind))
        if pruned.total:
            log.info("retention pruned %d row(s)", pruned.total)
        return pruned.total

    async def refresh_once(self) -> None:
        if self.v3 is None:
            return
        try:
            serials = await self.v3.refresh_certificates()
        except ScanpayError as exc:
            metrics.CERTIFICATE_DOWNLOADS.labels("schedule", "error").inc()
            log.warning("scheduled certificate refresh failed code=%s", exc.code)
            return
        metrics.CERTIFICATE_DOWNLOADS.labels("schedule", "ok").inc()
        log.debug("scheduled certificate refresh: %d certificate(s)", len(serials))

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            try:
                await job()
            except Exception:  # keep the loop alive; the next round tries again
                log.exception("housekeeping job failed")
            await asyncio.sleep(seconds)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(self._every(self.settings.retention_prune_seconds, self.prune_once))
        ]
        if self.v3 is not None:
            period = self.settings.platform_cert_refresh_seconds
            tasks.append(asyncio.create_task(self._every(period, self.refresh_once)))
        server: Any = None
        if self.settings.metrics_port is not None and self.settings.metrics_token is None:
            server, _thread = start_http_server(
                self.settings.metrics_port, addr="127.0.0.1", registry=self.registry
            )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if server is not None:
                server.shutdown()
                server.server_close()


def install(
    app: ScanpayApp,
    settings: Settings,
    store: SqlRefundStore,
    hub: ChangeHub,
    wechat: WeChatClients,
    clock: Callable[[], datetime],
) -> Housekeeper:
    limiter = SourceLimiter(
        settings.notify_refusals_per_minute, parse_networks(settings.notify_allow_list)
    )
    app.state.doorkeeper = Doorkeeper(store, limiter, settings.notify_refused_body_bytes, clock)
    watch_store(store)
    if settings.observe_requests:
        app.observer = RequestObserver(app.short_paths)
        for client in (wechat.v2, wechat.v3):
            if client is not None:
                instrument(client)
    v3 = wechat.v3
    downloads = (lambda: v3.downloads) if v3 is not None and v3.download_certificates else None
    collector = metrics.ServiceCollector(store.engine, clock, hub.open_streams, downloads)
    registry = metrics.build_registry(collector)
    app.state.metrics_registry = registry
    _metrics_route(app, settings, registry)
    return Housekeeper(settings, store, wechat.v3, clock, registry)


def _metrics_route(app: FastAPI, settings: Settings, registry: CollectorRegistry) -> None:
    token = settings.metrics_token

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint(request: Request) -> Response:
        if token is None:
            return PlainTextResponse("not found", status_code=404)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()
        ):
            return PlainTextResponse(
                "a valid metrics token is required (Authorization: Bearer)",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
