"""The webhook part of a service process, built from settings: outbox, sender, worker."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scanpay.config import Settings
from scanpay.store.outbox import OutboxStore
from scanpay.webhooks.safety import UnsafeUrlError, check_url
from scanpay.webhooks.schedule import parse_schedule
from scanpay.webhooks.sender import Sender
from scanpay.webhooks.worker import WebhookWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookRuntime:
    outbox: OutboxStore
    sender: Sender
    worker: WebhookWorker
    settings: Settings

    @property
    def allow_private(self) -> bool:
        return self.settings.webhook_allow_private

    def wake(self, order_id: str | None = None) -> None:
        self.worker.wake(order_id)

    @contextlib.asynccontextmanager
    async def running(self, *, worker: bool | None = None) -> AsyncIterator[None]:
        """The app's lifespan: the settings endpoint brought up to date, then the worker
        (when enabled, or when ``worker`` says so: ``scanpay deliver``) until the app stops."""
        s = self.settings
        secret = s.webhook_secret.get_secret_value() if s.webhook_secret is not None else None
        for tries_left in (1, 0):
            try:
                await self.outbox.call(
                    self.outbox.configure_settings_endpoint_sync,
                    s.webhook_url,
                    secret,
                    s.webhook_event_types,
                )
                break
            except sa.exc.IntegrityError:  # another process inserted it at the same moment
                if not tries_left:
                    raise
        if s.webhook_url is not None:
            try:
                await check_url(s.webhook_url, allow_private=s.webhook_allow_private)
            except UnsafeUrlError as exc:  # checked again at each delivery; say so now
                log.error("SCANPAY_WEBHOOK_URL will not receive webhooks: %s", exc.message)
        try:
            if s.webhooks_enabled if worker is None else worker:
                async with self.worker.running():
                    yield
            else:
                yield
        finally:
            await self.sender.aclose()


def build_webhooks(
    settings: Settings,
    engine: sa.Engine,
    run: Callable[..., Any],
    clock: Callable[[], datetime],
) -> WebhookRuntime:
    """``run`` runs a blocking database call where the order store runs its own."""
    outbox = OutboxStore(engine, run, clock)
    sender = Sender(allow_private=settings.webhook_allow_private)
    worker = WebhookWorker(
        outbox,
        sender,
        schedule=parse_schedule(settings.webhook_retry_schedule),
        poll_seconds=settings.webhook_poll_seconds,
        lease_seconds=settings.webhook_lease_seconds,
        concurrency=settings.webhook_concurrency,
        per_endpoint=settings.webhook_endpoint_concurrency,
        clock=clock,
    )
    return WebhookRuntime(outbox, sender, worker, settings)
